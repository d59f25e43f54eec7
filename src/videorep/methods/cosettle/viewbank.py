"""The view bank: frozen-encoder outputs computed once, reused for many epochs.

Because the encoder is frozen, a sample's three token sets ``z_1, z_2, z_1~`` (PEA included) do
not depend on the head. ``build_view_bank`` encodes ``K`` augmented samples per video once
(epochs ``0 .. K-1`` of the pair dataset) and stores them as float16 in one memory-mapped file;
:class:`ViewBankDataset` then serves them as ``{"tokens": [T + 1, N, D]}`` items, so training the
head for many epochs pays the encoder only ``K`` times per video. What it costs: augmentations
repeat after ``K`` views per video, and tokens are rounded to float16.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from videorep.errors import VideorepError
from videorep.utils.progress import progress_bar

BANK_FORMAT = "videorep-view-bank-v1"


def _write_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as fh:
            fh.write(json.dumps(data, indent=2))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def build_view_bank(
    dataset,  # FramePairDataset (has set_epoch, __len__, __getitem__)
    method,  # CoSettle (has encode, before_optimizer_step-style generator)
    views: int,
    folder: str | Path,
    identity: dict,
    batch_size: int = 16,
    progress: bool = True,
) -> Path:
    """Encode ``views`` samples of every item of ``dataset`` into ``folder`` (reused if present).

    ``identity`` (backbone, data settings, seed, ...) is stored with the bank; an existing bank
    with another identity is rebuilt. The tokens are appended chunk by chunk (``batch_size``
    items) to ``.tokens.rank<R>.partial`` and each complete chunk is recorded in
    ``progress.rank<R>.json``; an interrupted build (Ctrl-C, kill, full disk) keeps every
    complete chunk and the next call with the same identity continues from the last one, giving
    the same bytes as an uninterrupted build. Only a complete bank is renamed to ``tokens.f16``
    and described by ``meta.json``, so an unfinished one never looks finished.

    Raises:
        VideorepError: a write failed (disk full, permission); the complete chunks are kept.
        TrainingInterrupted: Ctrl-C during the build; the complete chunks are kept.
    """
    folder = Path(folder)
    meta_path, tokens_path = folder / "meta.json", folder / "tokens.f16"
    meta = _read_json(meta_path)
    if meta is not None and meta.get("identity") == identity and tokens_path.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)  # a bank being replaced must not look finished
    rank = os.environ.get("RANK", "0")  # torchrun ranks build their own copy side by side
    partial = folder / f".tokens.rank{rank}.partial"
    progress_path = folder / f"progress.rank{rank}.json"
    n = len(dataset)
    total = views * n
    first = dataset[0]["frames"][None]
    z0, grid = method.encode(first)
    shape = (total, *z0.shape[1:])
    plan = {
        "format": BANK_FORMAT,
        "identity": identity,
        "views": views,
        "items": n,
        "shape": list(shape),
        "grid": list(grid),
        "chunk": batch_size,
    }
    row_bytes = int(np.prod(shape[1:])) * 2  # float16
    header = io.BytesIO()
    np.lib.format.write_array_header_2_0(
        header, {"descr": "<f2", "fortran_order": False, "shape": shape}
    )
    header = header.getvalue()
    done = 0
    state = _read_json(progress_path)
    if (
        state is not None
        and state.get("plan") == plan
        and partial.is_file()
        and partial.stat().st_size >= len(header) + int(state.get("done", 0)) * row_bytes
    ):
        done = int(state["done"])
    bar = None
    if progress:
        bar = progress_bar(total, initial=done, desc="view bank")
    try:
        with open(partial, "r+b" if done else "wb") as fh:
            if done:
                fh.truncate(len(header) + done * row_bytes)  # drop a half-written chunk
                fh.seek(0, os.SEEK_END)
            else:
                fh.write(header)
            for v in range(views):
                epoch_set = False
                for start in range(0, n, batch_size):
                    idx = list(range(start, min(n, start + batch_size)))
                    if v * n + start + len(idx) <= done:
                        continue  # finished before an interruption
                    if not epoch_set:
                        dataset.set_epoch(v)
                        epoch_set = True
                    frames = torch.stack([dataset[i]["frames"] for i in idx])
                    seed = method.seed * 7_000_003 + v * 100_003 + start
                    method.pea_generator.manual_seed(seed)
                    z, _ = method.encode(frames)
                    fh.write(np.ascontiguousarray(z.cpu().numpy().astype("<f2")).tobytes())
                    fh.flush()
                    os.fsync(fh.fileno())
                    done = v * n + start + len(idx)
                    _write_json(progress_path, {"plan": plan, "done": done})
                    if bar is not None:
                        bar.update(len(idx))
        os.replace(partial, tokens_path)
        _write_json(meta_path, {k: v for k, v in plan.items() if k != "chunk"})
        progress_path.unlink(missing_ok=True)
    except OSError as exc:
        raise VideorepError(
            f"could not write view bank {partial} ({exc.strerror or exc}); the {done} of "
            f"{total} token sets finished so far are kept: rerun the same command to continue"
        ) from None
    except KeyboardInterrupt:
        from videorep.train.trainer import TrainingInterrupted

        raise TrainingInterrupted(
            f"interrupted while building the view bank {folder}: {done} of {total} token sets "
            "kept (rerun the same command to continue)"
        ) from None
    finally:
        if bar is not None:
            bar.close()
    return folder


class ViewBankDataset(Dataset):
    """Items ``{"tokens": float32 [T + 1, N, D], "grid": long [2]}`` from a built view bank."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise VideorepError(f"{folder}: not a view bank ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != BANK_FORMAT:
            raise VideorepError(f"{folder}: not a videorep view bank")
        tokens_path = folder / "tokens.f16"
        try:
            self.tokens = np.load(tokens_path, mmap_mode="r", allow_pickle=False)
            if not isinstance(self.tokens, np.ndarray):
                raise ValueError(f"not an .npy array ({type(self.tokens).__name__})")
            shape, grid = [int(x) for x in meta["shape"]], [int(x) for x in meta["grid"]]
        except Exception as exc:  # numpy raises many types for a damaged header
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise VideorepError(
                f"{tokens_path}: damaged view bank ({reason}); delete {folder} to rebuild it"
            ) from None
        if list(self.tokens.shape) != shape or self.tokens.dtype != np.float16 or len(grid) != 2:
            raise VideorepError(
                f"{tokens_path}: view bank holds {self.tokens.dtype} {list(self.tokens.shape)}, "
                f"meta.json says float16 {shape}; delete {folder} to rebuild it"
            )
        self.grid = torch.tensor(grid, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def __getitem__(self, index: int) -> dict:
        return {
            "tokens": torch.from_numpy(self.tokens[index].astype(np.float32)),
            "grid": self.grid,
        }

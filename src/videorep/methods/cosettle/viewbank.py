"""The view bank: frozen-encoder outputs computed once, reused for many epochs.

Because the encoder is frozen, a sample's three token sets ``z_1, z_2, z_1~`` (PEA included) do
not depend on the head. ``build_view_bank`` encodes ``K`` augmented samples per video once
(epochs ``0 .. K-1`` of the pair dataset) and stores them as float16 in one memory-mapped file;
:class:`ViewBankDataset` then serves them as ``{"tokens": [T + 1, N, D]}`` items, so training the
head for many epochs pays the encoder only ``K`` times per video. What it costs: augmentations
repeat after ``K`` views per video, and tokens are rounded to float16.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from videorep.errors import VideorepError

BANK_FORMAT = "videorep-view-bank-v1"


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
    with another identity is rebuilt. The file is written under a temporary name and renamed
    when complete, so an interrupted build never leaves a bank that looks finished.
    """
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("identity") == identity and (folder / "tokens.f16").is_file():
                return folder
        except ValueError:
            pass
    folder.mkdir(parents=True, exist_ok=True)
    n = len(dataset)
    total = views * n
    first = dataset[0]["frames"][None]
    z0, grid = method.encode(first)
    shape = (total, *z0.shape[1:])
    tmp = folder / f".tokens.{os.getpid()}.tmp"
    bank = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="view bank", dynamic_ncols=True)
    try:
        for v in range(views):
            dataset.set_epoch(v)
            for start in range(0, n, batch_size):
                idx = list(range(start, min(n, start + batch_size)))
                frames = torch.stack([dataset[i]["frames"] for i in idx])
                method.pea_generator.manual_seed(method.seed * 7_000_003 + v * 100_003 + start)
                z, _ = method.encode(frames)
                bank[v * n + start : v * n + start + len(idx)] = z.numpy().astype(np.float16)
                if bar is not None:
                    bar.update(len(idx))
        bank.flush()
        del bank
        os.replace(tmp, folder / "tokens.f16")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    meta = {
        "format": BANK_FORMAT,
        "identity": identity,
        "views": views,
        "items": n,
        "shape": list(shape),
        "grid": list(grid),
    }
    meta_path.write_text(json.dumps(meta, indent=2))
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

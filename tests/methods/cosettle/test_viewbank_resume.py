"""The view bank build keeps every complete chunk through Ctrl-C and a full disk, and resumes.

A bank built in one go, one built through an interruption and one built through a full disk
(ENOSPC simulated on the token file's writes) must hold the same bytes; each failure is one clear
error, and an unfinished bank never looks finished.
"""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch

from videorep.backbones import load_encoder
from videorep.data.pairs import FramePairDataset
from videorep.data.sources import discover_sources
from videorep.errors import VideorepError
from videorep.methods.cosettle import CoSettle, CoSettleConfig, viewbank
from videorep.methods.cosettle.viewbank import ViewBankDataset, build_view_bank
from videorep.train.trainer import TrainingInterrupted

VIEWS, BATCH = 2, 3  # 8 videos -> chunks of 3, 3, 2 per view: 6 chunks, 16 token sets
IDENTITY = {"test": "viewbank-resume"}


@pytest.fixture(scope="module")
def method():
    encoder = load_encoder("random_vit_tiny16")
    return CoSettle(encoder, CoSettleConfig(backbone="random_vit_tiny16"), seed=0)


@pytest.fixture
def pairs(frame_folders):
    return FramePairDataset(discover_sources(frame_folders), size=32, seed=0)


class Interrupting:
    """``dataset`` that raises KeyboardInterrupt on the ``at``-th item read (Ctrl-C mid-build)."""

    def __init__(self, dataset, at: int) -> None:  # noqa: ANN001
        self.dataset, self.at, self.reads = dataset, at, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __getitem__(self, i: int) -> dict:
        self.reads += 1
        if self.reads == self.at:
            raise KeyboardInterrupt
        return self.dataset[i]


def build(pairs, method, folder):  # noqa: ANN001, ANN201
    return build_view_bank(pairs, method, VIEWS, folder, IDENTITY, batch_size=BATCH, progress=False)


def progress_done(folder) -> int:  # noqa: ANN001
    return json.loads((folder / "progress.rank0.json").read_text())["done"]


@pytest.fixture
def reference(pairs, method, tmp_path) -> np.ndarray:
    folder = build(pairs, method, tmp_path / "reference")
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "tokens.f16"]
    return np.load(folder / "tokens.f16", allow_pickle=False)


def test_interrupted_build_keeps_complete_chunks_and_resumes_byte_identical(
    pairs, method, tmp_path, reference
) -> None:
    folder = tmp_path / "bank"
    # read 1 is the shape probe; reads 2-9 fill the first 8 items (chunks 1-2 of view 0 and
    # 2 of chunk 3): Ctrl-C on read 11 lands inside chunk 4 (view 1, items 0-2)
    with pytest.raises(TrainingInterrupted) as err:
        build(Interrupting(pairs, at=11), method, folder)
    assert str(err.value) == (
        f"interrupted while building the view bank {folder}: 8 of 16 token sets kept "
        "(rerun the same command to continue)"
    )
    assert not (folder / "meta.json").exists() and not (folder / "tokens.f16").exists()
    assert progress_done(folder) == 8
    with pytest.raises(VideorepError, match="not a view bank"):
        ViewBankDataset(folder)  # an unfinished bank never looks finished

    counting = Interrupting(pairs, at=0)
    build(counting, method, folder)
    assert counting.reads == 1 + 8  # the probe + the 8 items not yet encoded
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "tokens.f16"]
    resumed = np.load(folder / "tokens.f16", allow_pickle=False)
    assert resumed.dtype == np.float16 and resumed.tobytes() == reference.tobytes()
    item = ViewBankDataset(folder)[9]
    assert torch.equal(item["tokens"], torch.from_numpy(reference[9].astype(np.float32)))


class FillingFile:
    """A binary file whose writes fail with ENOSPC once ``limit`` bytes have been written."""

    def __init__(self, fh, limit: int) -> None:  # noqa: ANN001
        self.fh, self.left = fh, limit

    def write(self, data: bytes) -> int:
        if len(data) > self.left:
            self.fh.write(data[: self.left])  # the disk takes part of the chunk
            self.left = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.left -= len(data)
        return self.fh.write(data)

    def __getattr__(self, name: str):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()


def test_full_disk_keeps_the_last_complete_chunk_and_resumes(
    pairs, method, tmp_path, reference, monkeypatch
) -> None:
    folder = tmp_path / "bank"
    row = int(np.prod(reference.shape[1:])) * 2
    real_open = open

    def filling_open(path, mode="r", *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        fh = real_open(path, mode, *args, **kwargs)
        if str(path).endswith(".partial"):
            return FillingFile(fh, limit=256 + 7 * row)  # header + 7 rows: chunk 3 is cut short
        return fh

    monkeypatch.setattr(viewbank, "open", filling_open, raising=False)
    with pytest.raises(VideorepError) as err:
        build(pairs, method, folder)
    partial = folder / ".tokens.rank0.partial"
    assert str(err.value) == (
        f"could not write view bank {partial} (No space left on device); the 6 of 16 token "
        "sets finished so far are kept: rerun the same command to continue"
    )
    assert progress_done(folder) == 6 and not (folder / "meta.json").exists()
    monkeypatch.undo()

    build(pairs, method, folder)  # space freed: continues from token set 6
    resumed = np.load(folder / "tokens.f16", allow_pickle=False)
    assert resumed.tobytes() == reference.tobytes()


def test_a_bank_of_another_identity_is_rebuilt_and_never_half_replaced(
    pairs, method, tmp_path, reference
) -> None:
    folder = tmp_path / "bank"
    build(pairs, method, folder)
    other = {"test": "another identity"}
    with pytest.raises(TrainingInterrupted):
        build_view_bank(Interrupting(pairs, at=5), method, VIEWS, folder, other, BATCH, False)
    # the old bank's meta.json is gone: neither identity sees a finished bank
    assert not (folder / "meta.json").exists()
    build(pairs, method, folder)
    assert np.load(folder / "tokens.f16").tobytes() == reference.tobytes()


def test_token_file_of_another_shape_is_refused(pairs, method, tmp_path) -> None:
    folder = build(pairs, method, tmp_path / "bank")
    np.save(folder / "tokens.npy", np.zeros((2, 3), np.float16))
    (folder / "tokens.npy").replace(folder / "tokens.f16")
    with pytest.raises(
        VideorepError,
        match=r"tokens.f16: view bank holds float16 \[2, 3\], meta.json says float16 \[",
    ):
        ViewBankDataset(folder)

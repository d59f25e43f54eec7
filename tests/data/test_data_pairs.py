"""videorep.data.pairs: frame-pair / clip sampling, shared augmentation, determinism, workers."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from conftest import frame_number
from torch.utils.data import DataLoader
from torchvision.transforms import RandomResizedCrop

from videorep.data.images import IMAGENET_MEAN, IMAGENET_STD
from videorep.data.pairs import ClipDataset, FramePairDataset, crop_params, make_generator
from videorep.data.sources import DataWarning, VideoSource, discover_sources, shipped_videos
from videorep.errors import VideorepError


class FakeSource(VideoSource):
    """In-memory source: frame ``k`` = ``base + k`` (per-pixel texture plus a brightness step)."""

    def __init__(self, n, name="fake", static=False, height=60, width=80, broken=False):
        self.name, self.path, self.num_frames = name, f"/fake/{name}.mp4", n
        self.static, self.broken = static, broken
        rng = np.random.default_rng(len(name))
        self.base = rng.integers(40, 200, (height, width, 3)).astype(np.uint8)
        self.reads = []

    def read(self, indices):
        self._check(indices)
        self.reads.append(list(indices))
        if self.broken:
            raise VideorepError(f"{self.path}: decoding failed (simulated)")
        return [self.base if self.static else self.base + np.uint8(k) for k in indices]


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    return out, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def test_crop_params_match_torchvision():
    for seed in range(40):
        for h, w in ((224, 224), (480, 854), (77, 101), (10, 1000), (1000, 10)):
            torch.manual_seed(seed)
            expected = RandomResizedCrop.get_params(
                torch.empty(3, h, w), scale=[0.5, 1.0], ratio=[3 / 4, 4 / 3]
            )
            gen = torch.Generator().manual_seed(seed)
            assert crop_params(h, w, (0.5, 1.0), (3 / 4, 4 / 3), gen) == tuple(expected)


@pytest.mark.parametrize("n, gap", [(50, 8), (40, 6), (49, 7), (20, 3), (8, 1), (2, 1)])
def test_pair_gap_and_range(n, gap):
    ds = FramePairDataset([FakeSource(n)] * 1, size=32)
    assert ds.gap(n) == gap == max(1, round(0.15 * n))
    firsts = set()
    for e in range(60):
        ds.set_epoch(e)
        item = ds[0]
        t1, t2 = item["indices"].tolist()
        assert t2 - t1 == gap and 0 <= t1 <= n - 1 - gap
        firsts.add(t1)
    assert firsts == set(range(n - gap)) if n - gap <= 10 else len(firsts) > 10
    assert item["frames"].shape == (2, 3, 32, 32) and item["frames"].dtype == torch.float32


def test_multi_frame_walk_indices():
    ds = FramePairDataset([FakeSource(40)], frames=4, size=16)
    for e in range(20):
        ds.set_epoch(e)
        idx = ds[0]["indices"].tolist()
        assert np.diff(idx).tolist() == [6, 6, 6] and idx[0] >= 0 and idx[-1] <= 39
    assert ds[0]["frames"].shape == (4, 3, 16, 16)


def test_static_video_frames_identical_after_augmentation():
    ds = FramePairDataset([FakeSource(30, static=True)], size=48)
    for e in range(5):
        ds.set_epoch(e)
        frames = ds[0]["frames"]
        assert torch.equal(frames[0], frames[1])


def test_shared_crop_and_flip_match_reference():
    """End-to-end: recompute the item by hand from the documented draw order."""
    source = FakeSource(50, height=90, width=120)
    ds = FramePairDataset([source], size=64, seed=7)
    flips = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        item = ds[0]
        gen = make_generator(7, epoch, 0)
        t1 = int(torch.randint(0, 50 - 8, (1,), generator=gen))
        top, left, h, w = crop_params(90, 120, (0.5, 1.0), (3 / 4, 4 / 3), gen)
        flip = float(torch.empty(1).uniform_(0, 1, generator=gen)) < 0.5
        flips.add(flip)
        assert item["indices"].tolist() == [t1, t1 + 8]
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        for k, t in enumerate((t1, t1 + 8)):
            img = torch.from_numpy(source.base + np.uint8(t)).permute(2, 0, 1).float() / 255
            ref = TF.resized_crop(
                img, top, left, h, w, [64, 64], TF.InterpolationMode.BICUBIC, antialias=True
            ).clamp(0, 1)
            if flip:
                ref = TF.hflip(ref)
            torch.testing.assert_close(item["frames"][k], (ref - mean) / std, atol=1e-5, rtol=0)
        # the two frames differ by the brightness step only: same crop, same flip
        step = (8 / 255) / std
        diff = item["frames"][1] - item["frames"][0]
        assert (diff - step).abs().max() < 0.02
    assert flips == {True, False}


def test_determinism_and_epochs():
    sources = [FakeSource(50, "a"), FakeSource(40, "b"), FakeSource(60, "c")]
    ds1 = FramePairDataset(sources, size=32, seed=3)
    ds2 = FramePairDataset(sources, size=32, seed=3)
    ds1.set_epoch(4)
    ds2.set_epoch(4)
    for i in (2, 0, 1):  # access order does not matter
        a, b = ds1[i], ds2[i]
        assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["indices"], b["indices"])
    before = ds1[1]
    ds1.set_epoch(5)
    after = ds1[1]
    assert not torch.equal(before["frames"], after["frames"])
    ds1.set_epoch(4)
    assert torch.equal(ds1[1]["frames"], before["frames"])  # resume replays epoch 4
    other_seed = FramePairDataset(sources, size=32, seed=4)
    other_seed.set_epoch(4)
    assert not torch.equal(other_seed[1]["frames"], before["frames"])
    # global RNG is neither used nor disturbed
    torch.manual_seed(0)
    state = torch.get_rng_state()
    ds1[0]
    assert torch.equal(torch.get_rng_state(), state)


def test_short_sources_skipped_and_error():
    sources = [FakeSource(1, "tiny"), FakeSource(20, "ok")]
    ds, warned = quiet(FramePairDataset, sources, frames=3)
    assert len(ds) == 1 and ds[0]["source"] == 1
    assert len(warned) == 1 and "/fake/tiny.mp4: skipped: 1 frame(s)" in warned[0]
    with (
        pytest.warns(DataWarning, match="needs 29"),
        pytest.raises(VideorepError, match="none of the 1"),
    ):
        ClipDataset([FakeSource(20, "short")], clip_len=8, stride=4)


def test_read_failure_mid_epoch_substitutes_deterministically():
    sources = [FakeSource(30, "good0"), FakeSource(30, "bad", broken=True), FakeSource(30, "good2")]
    ds = FramePairDataset(sources, size=16)
    (item, warned) = quiet(ds.__getitem__, 1)
    assert item["source"] == 2 and item["index"] == 1
    assert len(warned) == 1 and warned[0].startswith("/fake/bad.mp4: decoding failed")
    item2, warned2 = quiet(ds.__getitem__, 1)
    assert warned2 == []  # warned once per source
    assert torch.equal(item["frames"], item2["frames"])
    assert not torch.equal(item["frames"], ds[2]["frames"])  # substitute is not a copy of item 2
    all_bad = FramePairDataset([FakeSource(30, "x", broken=True)], size=16)
    with pytest.warns(DataWarning), pytest.raises(VideorepError, match="failed to read"):
        all_bad[0]


def test_clip_dataset():
    ds = ClipDataset([FakeSource(40, static=False)], clip_len=4, stride=3, views=2, size=24)
    starts = set()
    for e in range(10):
        ds.set_epoch(e)
        item = ds[0]
        assert item["frames"].shape == (2, 4, 3, 24, 24)
        idx = item["indices"]
        assert idx.shape == (2, 4)
        assert (idx.diff(dim=1) == 3).all() and idx.min() >= 0 and idx.max() <= 39
        starts.add(tuple(idx[:, 0].tolist()))
    assert any(a != b for a, b in starts)  # views draw their own offsets
    static = ClipDataset([FakeSource(40, static=True)], clip_len=4, stride=3, size=24)
    frames = static[0]["frames"]
    for v in range(2):  # frames of a view share the crop
        assert all(torch.equal(frames[v, 0], frames[v, t]) for t in range(4))
    assert not torch.equal(frames[0, 0], frames[1, 0])  # views have their own crops


def test_real_video_items(videos):
    sources = discover_sources([videos["mp4"], videos["rotated"]])
    ds = FramePairDataset(sources, size=40)
    item = ds[0]
    assert item["indices"].tolist()[1] - item["indices"].tolist()[0] == 1  # 8 frames: gap 1
    assert item["frames"].shape == (2, 3, 40, 40)
    raw = sources[0].read(item["indices"].tolist())
    assert [frame_number(f) for f in raw] == [
        int(np.ceil(12.5 * i)) for i in item["indices"].tolist()
    ]
    assert ds[1]["frames"].shape == (2, 3, 40, 40)  # rotated video: 64x96 frames


def test_davis_pairs(davis_480p):
    sources = discover_sources(davis_480p)
    ds = FramePairDataset(sources, size=56)
    gaps = []
    for i in range(3):
        item = ds[i]
        assert item["frames"].shape == (2, 3, 56, 56) and item["source"] == i
        t1, t2 = item["indices"].tolist()
        gaps.append(t2 - t1)
        assert 0 <= t1 and t2 <= sources[i].num_frames - 1
    assert gaps == [8, 6, 7]  # round(0.15 * n) for n = 50, 40, 49
    # ImageNet-normalised natural images: roughly zero-mean, unit-scale
    assert -2.2 < float(ds[0]["frames"].min()) and float(ds[0]["frames"].max()) < 2.7


def _loader_pass(ds, workers, epochs=(0, 1)):
    out = []
    loader = DataLoader(ds, batch_size=2, num_workers=workers, timeout=120 if workers else 0)
    for epoch in epochs:
        ds.set_epoch(epoch)
        for batch in loader:
            out.append((batch["frames"], batch["indices"], batch["source"]))
    return out


def test_dataloader_two_workers_over_mp4(videos, tmp_path):
    paths = [p for p in shipped_videos() if p.name != "bigbuckbunny.mp4"]  # 720p: slow to decode
    for key in ("mp4", "webm"):
        shutil.copy(videos[key], tmp_path / videos[key].name)
    sources = discover_sources(paths + [tmp_path / "counter.mp4", tmp_path / "counter.webm"])
    ds = FramePairDataset(sources, size=32)
    # a file that breaks after discovery: warned about and substituted, never a crash
    (tmp_path / "counter.webm").write_bytes(b"")
    with pytest.warns(DataWarning, match=r"counter\.webm: video file is empty"):
        in_process = _loader_pass(ds, workers=0)
    with_workers = _loader_pass(ds, workers=2)
    assert len(with_workers) == len(in_process) == 2 * 3
    for (fa, ia, sa), (fb, ib, sb) in zip(with_workers, in_process):
        assert fa.shape[1:] == (2, 3, 32, 32)
        assert torch.equal(fa, fb) and torch.equal(ia, ib) and torch.equal(sa, sb)


@pytest.mark.slow
def test_dataloader_spawn_workers(videos):
    ds = FramePairDataset(discover_sources(shipped_videos()), size=32)
    loader = DataLoader(
        ds, batch_size=2, num_workers=2, multiprocessing_context="spawn", timeout=300
    )
    assert sum(b["frames"].shape[0] for b in loader) == 4


def test_frames_of_different_sizes_are_resized_to_the_first():
    class Mixed(FakeSource):
        def read(self, indices):
            frames = super().read(indices)
            return [frames[0]] + [np.ascontiguousarray(f[::2, ::2]) for f in frames[1:]]

    source = Mixed(20, static=True, height=77, width=101)
    yy, xx = np.mgrid[0:77, 0:101]
    source.base = np.stack([xx * 2, yy * 3, xx + yy], axis=-1).astype(np.uint8)  # smooth
    item = FramePairDataset([source], size=32)[0]
    assert item["frames"].shape == (2, 3, 32, 32)
    # the half-size frame was brought back to 77x101 before the shared crop
    assert (item["frames"][0] - item["frames"][1]).abs().mean() < 0.05


def test_repeats_gives_several_items_per_source():
    sources = [FakeSource(50, "a"), FakeSource(40, "b")]
    ds = FramePairDataset(sources, size=16, repeats=3)
    assert len(ds) == 6
    items = [ds[i] for i in range(6)]
    assert [it["source"] for it in items] == [0, 1, 0, 1, 0, 1]
    firsts = {it["indices"][0].item() for it in items[0::2]}
    assert len(firsts) > 1  # the repeats of a source are different samples
    with pytest.raises(IndexError):
        ds[6]

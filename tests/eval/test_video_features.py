"""Video features: sampling, pooling, the disk cache (no encoder pass on a second run), resume,
unreadable videos, video encoders, and chiral probes on reversed videos."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from video_collections import make_collection

from videorep.backbones import load_encoder
from videorep.data.labelled import load_collection
from videorep.data.sources import DataWarning
from videorep.errors import VideorepError
from videorep.eval.video_commands import chiral_collection
from videorep.eval.video_features import (
    ClipFeatureEncoder,
    FrameFeatureEncoder,
    Sampling,
    extract_features,
)
from videorep.eval.video_metrics import chiral_pairs_accuracy
from videorep.methods.bodvcl.encoders import build_encoder
from videorep.methods.bodvcl.probe import linear_probe
from videorep.methods.cosettle.heads import ProjectionHead

SAMPLING = Sampling(frames=4, size=32)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run faster on one thread on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return load_collection(make_collection(tmp_path_factory.mktemp("moving"), train=3, test=2))


@pytest.fixture(scope="module")
def vit():
    return load_encoder("random_vit_tiny16")


class Counting(torch.nn.Module):
    """Counts forward passes of the wrapped encoder."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.patch_size, self.embed_dim = encoder.patch_size, encoder.embed_dim
        self.passes = 0

    def forward(self, x):
        self.passes += 1
        return self.encoder(x)


def test_frame_features_shapes_and_pooling(collection, vit):
    enc = FrameFeatureEncoder(vit, "vit")
    fs = extract_features(collection, enc, SAMPLING, batch_size=8, progress=False)
    assert fs.features.shape == (10, 1, 4, 192)
    assert fs.labels.tolist() == collection.labels().tolist()
    assert fs.encoded == 10 and fs.cached == 0 and fs.encoder_calls == 5  # 40 frames / 8
    assert torch.allclose(fs.pooled("mean"), fs.features[:, 0].mean(1))
    assert torch.equal(fs.pooled("concat")[:, 192:384], fs.features[:, 0, 1])
    # a frame feature is the mean of the patch tokens
    from videorep.data.images import normalize, resize, to_tensor
    from videorep.data.labelled import read_uniform

    frames = read_uniform(collection.videos[0], 4)
    x = normalize(resize(torch.stack([to_tensor(f) for f in frames]), (32, 32)))
    with torch.no_grad():
        ref = vit(x).mean(1)
    assert torch.allclose(fs.features[0, 0], ref, atol=1e-5)
    with pytest.raises(VideorepError, match="unknown pooling"):
        fs.pooled("max")


def test_second_evaluation_does_no_encoder_pass(collection, vit, tmp_path):
    counting = Counting(vit)
    first = extract_features(
        collection, FrameFeatureEncoder(counting, "vit"), SAMPLING, tmp_path, progress=False
    )
    assert counting.passes > 0 and first.encoded == 10
    counting.passes = 0
    second = extract_features(
        collection, FrameFeatureEncoder(counting, "vit"), SAMPLING, tmp_path, progress=False
    )
    assert counting.passes == 0 and second.encoder_calls == 0
    assert (second.encoded, second.cached) == (0, 10)
    assert torch.equal(second.features, first.features)
    # a subset (another evaluation of the same videos) is served from the same entries
    third = extract_features(
        collection.videos[:3],
        FrameFeatureEncoder(counting, "vit"),
        SAMPLING,
        tmp_path,
        progress=False,
    )
    assert counting.passes == 0 and torch.equal(third.features, first.features[:3])
    # a changed file (new mtime) is encoded again, and only that one
    path = collection.videos[4].path
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    fourth = extract_features(
        collection, FrameFeatureEncoder(counting, "vit"), SAMPLING, tmp_path, progress=False
    )
    assert (fourth.encoded, fourth.cached) == (1, 9) and counting.passes == 1
    # another head or another sampling is another cache folder
    head = ProjectionHead(192)
    other = extract_features(
        collection, FrameFeatureEncoder(vit, "vit", head), SAMPLING, tmp_path, progress=False
    )
    assert other.encoded == 10 and other.cache_dir != first.cache_dir
    again = extract_features(
        collection,
        FrameFeatureEncoder(vit, "vit"),
        Sampling(frames=2, size=32),
        tmp_path,
        progress=False,
    )
    assert again.encoded == 10


def test_interrupted_pass_resumes(collection, vit, tmp_path):
    class Dies(Counting):
        def forward(self, x):
            if self.passes == 2:
                raise KeyboardInterrupt
            return super().forward(x)

    dying = Dies(vit)
    with pytest.raises(KeyboardInterrupt):
        extract_features(
            collection,
            FrameFeatureEncoder(dying, "vit"),
            SAMPLING,
            tmp_path,
            batch_size=4,
            progress=False,
        )
    counting = Counting(vit)
    resumed = extract_features(
        collection,
        FrameFeatureEncoder(counting, "vit"),
        SAMPLING,
        tmp_path,
        batch_size=4,
        progress=False,
    )
    assert (resumed.cached, resumed.encoded) == (2, 8)  # one video per batch of 4 frames
    fresh = extract_features(collection, FrameFeatureEncoder(vit, "vit"), SAMPLING, progress=False)
    assert torch.allclose(resumed.features, fresh.features, atol=1e-5)


def test_unreadable_video_skipped_and_counted(tmp_path, vit):
    root = make_collection(tmp_path / "c", train=2, test=1)
    (root / "train" / "left" / "broken.mp4").write_bytes(b"not a video" * 20)
    coll = load_collection(root)
    assert len(coll) == 7
    with pytest.warns(DataWarning, match="broken.mp4"):
        fs = extract_features(
            coll, FrameFeatureEncoder(vit, "vit"), SAMPLING, tmp_path / "cache", progress=False
        )
    assert len(fs.videos) == 6 and len(fs.failed) == 1 and "broken.mp4" in fs.failed[0][0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # remembered: no second warning, still counted
        again = extract_features(
            coll, FrameFeatureEncoder(vit, "vit"), SAMPLING, tmp_path / "cache", progress=False
        )
    assert len(again.failed) == 1 and again.encoder_calls == 0


def test_video_encoder_clips(collection, tmp_path):
    torch.manual_seed(0)
    enc = ClipFeatureEncoder(build_encoder("tiny3d"), "tiny3d")
    sampling = Sampling(clip_len=4, stride=1, clips=2, size=32)
    fs = extract_features(collection, enc, sampling, tmp_path, batch_size=6, progress=False)
    assert fs.features.shape == (10, 2, 4, 32)
    assert fs.pooled("concat").shape == (10, 128)
    again = extract_features(collection, enc, sampling, tmp_path, progress=False)
    assert again.encoder_calls == 0 and torch.equal(again.features, fs.features)


def test_chiral_reversal_invisible_to_mean_visible_to_concat(collection, vit):
    chiral, pairs = chiral_collection(collection)
    assert len(chiral) == 20 and pairs == [(0, 2), (1, 3)]
    assert chiral.classes[2] == "left (reversed)"
    fs = extract_features(chiral, FrameFeatureEncoder(vit, "vit"), SAMPLING, progress=False)
    tr, te = chiral.split(1)
    rows = {id(v): i for i, v in enumerate(fs.videos)}
    a = torch.tensor([rows[id(v)] for v in tr])
    b = torch.tensor([rows[id(v)] for v in te])
    acc = {}
    for pool in ("mean", "concat"):
        x = fs.pooled(pool)
        acc[pool] = chiral_pairs_accuracy(
            linear_probe, x[a], fs.labels[a], x[b], fs.labels[b], pairs
        )["accuracy"]
    assert acc["mean"] == pytest.approx(0.5)  # the same frames, so the same mean: chance
    assert acc["concat"] == 1.0  # the order of the frames tells the direction

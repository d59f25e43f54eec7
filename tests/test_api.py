"""The Python API (``videorep.api``, re-exported lazily by ``import videorep``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import videorep
from videorep.errors import VideorepError

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def tiny():
    return videorep.load_encoder("random_vit_tiny16")


@pytest.fixture(scope="module")
def folder(frame_folders: Path) -> Path:
    return frame_folders / "video0"  # 8 PNG frames, 48 x 48


def blob_mask(size: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    mask = np.zeros((size, size), np.uint8)
    mask[(yy - 20) ** 2 + (xx - 24) ** 2 < 100] = 1
    mask[:6, :10] = 2
    return mask


def test_import_is_cheap_and_names_are_public():
    code = (
        "import sys, videorep; assert 'torch' not in sys.modules, 'torch imported'; "
        "videorep.extract_features; assert 'torch' in sys.modules; print(sorted(videorep.__all__))"
    )
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for name in ("load_encoder", "extract_features", "load_projection", "propagate", "Features"):
        assert name in out.stdout
    assert (SRC / "videorep" / "py.typed").is_file()
    # the lazy re-export lists exactly the API module's public names
    import videorep.api

    assert sorted(videorep._API) == sorted(videorep.api.__all__)
    with pytest.raises(AttributeError):
        videorep.no_such_name  # noqa: B018


def test_load_encoder_device(tiny):
    enc = videorep.load_encoder("random_vit_tiny16", device=torch.device("cpu"))
    assert next(enc.parameters()).device == torch.device("cpu")
    assert enc.embed_dim == 192 and enc.patch_size == 16


def test_batched_equals_one_by_one(tiny, folder):
    from videorep.eval.core import FeatureExtractor

    one = videorep.extract_features(tiny, folder, size=(48, 64), batch=1)
    many = videorep.extract_features(tiny, folder, size=(48, 64), batch=3)
    assert one.tokens.shape == many.tokens.shape == (8, 3, 4, 192)
    assert one.tokens.dtype == torch.float32
    torch.testing.assert_close(many.tokens, one.tokens, rtol=1e-5, atol=1e-5)
    assert one.grid == (3, 4) and one.size == (48, 64) and one.frame_size == (48, 48)
    assert one.frame_indices == list(range(8)) and one.timestamps is None
    # batch=1 is exactly the per-frame extractor eval davis uses
    ex = FeatureExtractor(tiny, (48, 64))
    rgb = np.asarray(Image.open(folder / "00005.png").convert("RGB"))
    assert torch.equal(one.tokens[5], ex(rgb))


def test_inputs_list_array_video(tiny, folder):
    paths = sorted(folder.glob("*.png"))
    a = videorep.extract_features(tiny, [str(p) for p in paths[:3]], size=(32, 32))
    arr = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths[:3]])
    b = videorep.extract_features(tiny, arr, size=(32, 32), device="cpu")
    assert torch.equal(a.tokens, b.tokens) and a.tokens.shape == (3, 2, 2, 192)
    from videorep.data.sources import shipped_videos

    clip = next(v for v in shipped_videos() if v.name == "carphone_pristine.mp4")  # 176x144
    v = videorep.extract_features(tiny, clip, size=(64, 80), batch=4, fps=5.0)
    n = len(v)
    assert n == 20 and v.tokens.shape == (n, 4, 5, 192) and v.frame_size == (144, 176)
    assert v.timestamps == pytest.approx([i / 5.0 for i in range(n)])


def test_layer_and_cls_equal_hooks(tiny, folder):
    seen = {}
    h1 = tiny.vit.blocks[2].register_forward_hook(lambda m, i, o: seen.__setitem__("b2", o))
    h2 = tiny.vit.norm.register_forward_hook(lambda m, i, o: seen.__setitem__("norm", o))
    try:
        rgb = np.asarray(Image.open(folder / "00000.png").convert("RGB"))
        full = videorep.extract_features(tiny, rgb[None], size=(48, 64), cls=True)
        norm = seen["norm"]
        mid = videorep.extract_features(tiny, rgb[None], size=(48, 64), layer=2, cls=True)
    finally:
        h1.remove()
        h2.remove()
    assert torch.equal(full.cls, norm[:, 0]) and full.cls.shape == (1, 192)
    assert torch.equal(full.tokens.reshape(1, 12, 192), norm[:, 1:])
    assert torch.equal(mid.tokens.reshape(1, 12, 192), seen["b2"][:, 1:])
    assert torch.equal(mid.cls, seen["b2"][:, 0]) and mid.layer == 2
    assert not torch.allclose(mid.tokens, full.tokens)
    with pytest.raises(VideorepError, match="layer 12 out of range"):
        videorep.extract_features(tiny, rgb[None], size=(48, 64), layer=12)


def test_propagate_features_equals_frames(tiny, folder):
    mask = blob_mask()
    feats = videorep.extract_features(tiny, folder, size=(64, 64), batch=1)
    a = videorep.propagate(feats, mask, preset="cropmae")
    b = videorep.propagate(folder, mask, encoder=tiny, size=(64, 64))
    assert a.shape == (8, 48, 48) and a.dtype == np.uint8
    assert np.array_equal(a, b) and np.array_equal(a[0], mask)
    assert set(np.unique(a[1:]).tolist()) <= {0, 1, 2} and (a[1:] == 1).any()
    # overrides reach the engine: a 1-neighbour top-k predicts differently
    c = videorep.propagate(feats, mask, preset="cropmae", topk=1, radius=1)
    assert not np.array_equal(a, c)


def test_propagate_equals_eval_davis_engine(tiny, davis_sample, tmp_path):
    """The API's masks are the PNGs evaluate_sequence writes (same engine, same extractor)."""
    from videorep.data.davis import load_sequence
    from videorep.eval.core import FeatureExtractor
    from videorep.eval.davis import evaluate_sequence, read_prediction
    from videorep.eval.propagation import resolve_config

    seq = load_sequence(davis_sample, "blackswan", year=2016)
    seq.frames, seq.annotations = seq.frames[:5], seq.annotations[:5]
    out = tmp_path
    ex = FeatureExtractor(tiny, (96, 160))
    evaluate_sequence(seq, ex, ex.grid, resolve_config("cropmae", "davis"), out)
    masks = videorep.propagate(
        [str(p) for p in seq.frames], seq.annotations[0], encoder=tiny, size=(96, 160)
    )
    for t in range(5):
        assert np.array_equal(masks[t], read_prediction(out / "blackswan" / f"{t:05d}.png"))


def test_mask_errors(tiny, folder, tmp_path):
    feats = videorep.extract_features(tiny, folder, size=(32, 32))
    with pytest.raises(VideorepError, match="empty mask"):
        videorep.propagate(feats, np.zeros((48, 48), np.uint8))
    with pytest.raises(VideorepError, match="mask size 40x48 differs from the frames' 48x48"):
        videorep.propagate(feats, np.ones((48, 40), np.uint8))
    small = blob_mask()[::2, ::2]  # same aspect: resized (nearest) with a warning
    with pytest.warns(UserWarning, match="resized to the frames' 48x48"):
        out = videorep.propagate(feats, small)
    assert out.shape == (8, 48, 48) and np.array_equal(out[0][::2, ::2], small)
    png = tmp_path / "m.png"
    Image.fromarray((blob_mask() > 0).astype(np.uint8) * 255).save(png)  # 0/255: one object
    assert set(np.unique(videorep.read_mask(png)).tolist()) == {0, 1}
    Image.fromarray((np.zeros((4, 4, 3)) + [255, 0, 0]).astype(np.uint8)).save(tmp_path / "c.png")
    with pytest.raises(VideorepError, match="c.png: a colour image"):
        videorep.read_mask(tmp_path / "c.png")


def test_input_errors(tiny, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(VideorepError, match="broken.mp4"):
        videorep.extract_features(tiny, bad)
    with pytest.raises(VideorepError, match="no such video file or frame folder"):
        videorep.extract_features(tiny, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideorepError, match="no image files"):
        videorep.extract_features(tiny, tmp_path / "empty")
    with pytest.raises(VideorepError, match=r"\[T, H, W, 3\] uint8"):
        videorep.extract_features(tiny, np.zeros((2, 8, 8), np.uint8))


def test_davis_jf():
    gt = np.zeros((4, 20, 20), np.uint8)
    gt[:, 5:15, 5:15] = 1
    assert videorep.davis_jf(gt, gt) == 1.0
    assert videorep.davis_jf(np.zeros_like(gt), gt) == 0.0
    half = gt.copy()
    half[:, 5:15, 10:15] = 0  # J = 0.5 on the scored frames 1 and 2
    assert 0.5 < videorep.davis_jf(half, gt) < 1.0


def test_load_projection_run_or_folder(tmp_path):
    from videorep.methods.cosettle.heads import ProjectionHead, save_projection

    head = ProjectionHead(192, "linear")
    save_projection(head, tmp_path / "run" / "projection", {"backbone": "random_vit_tiny16"})
    a = videorep.load_projection(tmp_path / "run")
    b = videorep.load_projection(tmp_path / "run" / "projection", device="cpu", expect_dim=192)
    x = torch.randn(1, 5, 192)
    assert torch.equal(a(x), head(x)) and torch.equal(b(x), head(x))
    with pytest.raises(VideorepError, match="does not match the encoder width 384"):
        videorep.load_projection(tmp_path / "run", expect_dim=384)

"""Evaluation on a chosen device: placement, ``--device`` / ``--batch-frames`` /
``--encoder-dtype`` decisions, and identical results on the CPU.

The placement test runs on the CPU in the default run and on a GPU among the ``cuda`` tests
(``-m cuda``), through the same code: the command's own set-up (``build_extractor``), one
evaluated frame of the propagation engine, then every parameter and buffer of the encoder and
the projection head, every buffer of the engine and the prediction must be on the device.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_layouts import make_davis

from videorep.cli import main
from videorep.errors import VideorepError
from videorep.eval import commands
from videorep.eval import core as eval_core
from videorep.eval.core import FeatureExtractor, propagate_frames, propagate_masks
from videorep.eval.feature_cache import CachingEncoder, weights_fingerprint
from videorep.eval.propagation import LabelPropagator, PropagationConfig
from videorep.utils.encoder_dtype import resolve_encoder_dtype

TINY = ["--backbone", "random_vit_tiny16", "--size", "64x96"]

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
        ],
    ),
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    return parser


def _tensors(obj: object) -> list[torch.Tensor]:
    """Every tensor held in ``obj`` (tensors, tuples/lists/dicts of them, nested)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for x in obj for t in _tensors(x)]
    if isinstance(obj, dict):
        return [t for x in obj.values() for t in _tensors(x)]
    return []


def _on(device: torch.device, tensors: list[torch.Tensor]) -> list[str]:
    want = torch.device(device)
    return [
        f"{tuple(t.shape)} on {t.device}"
        for t in tensors
        if t.device.type != want.type or (want.index is not None and t.device.index != want.index)
    ]


@pytest.mark.parametrize("device", DEVICES)
def test_everything_is_on_the_requested_device_after_one_frame(device, tmp_path, monkeypatch):
    from videorep.methods.cosettle.heads import ProjectionHead, save_projection

    torch.manual_seed(0)
    save_projection(ProjectionHead(192), tmp_path / "proj")
    root = make_davis(tmp_path / "DAVIS", n_frames=3)
    args = _parser().parse_args(
        ["eval", "davis", "--root", str(root), "--out", str(tmp_path / "out"), *TINY]
        + ["--projection", str(tmp_path / "proj"), "--device", device, "--batch-frames", "2"]
    )
    ex = commands.build_extractor(args)
    want = args.device_resolved
    assert want.type == device
    seen: list[LabelPropagator] = []

    class Recording(LabelPropagator):
        def __init__(self, *a, **k) -> None:  # noqa: ANN002, ANN003
            super().__init__(*a, **k)
            seen.append(self)

    monkeypatch.setattr(eval_core, "LabelPropagator", Recording)
    frames = sorted((root / "JPEGImages" / "480p" / "squares").glob("*.jpg"))
    label0 = torch.zeros(3, *ex.grid)
    label0[0] = 1
    t, soft = next(propagate_frames(frames, label0, ex, PropagationConfig(3, 2, 2)))
    assert t == 1 and soft.shape == (3, *ex.grid)
    (prop,) = seen
    encoder_state = [*ex.encoder.parameters(), *ex.encoder.buffers()]
    head_state = [*ex.projection.parameters(), *ex.projection.buffers()]
    engine = _tensors(vars(prop))
    assert len(encoder_state) > 100 and len(head_state) == 4
    # ring buffers, labels, affinity workspace, exact-pair buffers and the band geometry
    assert prop._feats is not None and prop._work is not None and prop._geometry
    assert len(engine) >= 8
    assert _on(want, encoder_state) == []
    assert _on(want, head_state) == []
    assert _on(want, engine) == []
    assert _on(want, [soft]) == []


def test_device_cpu_gives_the_results_of_no_flag(tmp_path, capsys):
    root = make_davis(tmp_path / "DAVIS", n_frames=5)
    base = ["eval", "davis", "--root", str(root), *TINY, "--encoder-dtype", "fp32"]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert main([*base, "--out", str(tmp_path / "cpu"), "--device", "cpu"]) == 0
    plain = json.loads((tmp_path / "plain" / "results.json").read_text())
    cpu = json.loads((tmp_path / "cpu" / "results.json").read_text())
    assert plain["JF_mean"] == cpu["JF_mean"]
    assert plain["per_sequence"] == cpu["per_sequence"]
    assert cpu["settings"]["device"] == "cpu" and cpu["settings"]["batch_frames"] == 1
    for png in sorted((tmp_path / "plain" / "squares").glob("*.png")):
        assert png.read_bytes() == (tmp_path / "cpu" / "squares" / png.name).read_bytes()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--device", "tpu"], "--device 'tpu': expected auto"),
        (["--device", "cpu", "--batch-frames", "0"], "--batch-frames 0: must be at least 1"),
    ],
)
def test_bad_device_or_batch_is_one_error_line(flags, message, tmp_path, capsys):
    root = make_davis(tmp_path / "DAVIS", n_frames=3)
    rc = main(["eval", "davis", "--root", str(root), "--out", str(tmp_path / "o"), *TINY, *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("videorep: error: ") and message in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_cuda_without_a_gpu_is_one_error_line(tmp_path, capsys):
    rc = main(
        ["eval", "davis", "--root", str(tmp_path), "--out", str(tmp_path / "o")]
        + [
            "--device",
            "cuda",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "CUDA is not available" in err[0]


class _CountingExtractor(FeatureExtractor):
    """Records the batch sizes of its encoder calls."""

    def __init__(self, *a, **k) -> None:  # noqa: ANN002, ANN003
        super().__init__(*a, **k)
        self.calls: list[int] = []

    def batch(self, frames):  # noqa: ANN001, ANN201
        self.calls.append(len(frames))
        return super().batch(frames)


def test_batch_frames_gives_the_same_masks_and_stays_lazy(tmp_path):
    from videorep.backbones import load_encoder

    root = make_davis(tmp_path / "DAVIS", n_frames=9)
    seq = root / "JPEGImages" / "480p" / "squares"
    frames = sorted(seq.glob("*.jpg"))
    from videorep.data.davis import read_annotation

    labels0, void0 = read_annotation(root / "Annotations" / "480p" / "squares" / "00000.png", 2017)
    encoder = load_encoder("random_vit_tiny16", "random")
    config = PropagationConfig(topk=3, queue=3, radius=2)
    masks = {}
    for n in (1, 4):
        ex = _CountingExtractor(encoder, (64, 96), batch_frames=n)
        order: list[int] = []
        consumed: list[int] = []

        def lazily(paths, consumed=consumed):  # noqa: ANN001, ANN202
            for i, p in enumerate(paths):
                consumed.append(i)
                yield p

        out = propagate_masks(
            lazily(frames),
            labels0,
            3,
            ex,
            ex.grid,
            config,
            (64, 96),
            void0,
            on_frame=lambda t, rgb, order=order: order.append(t),
        )
        first = next(out)
        # lazy: one batch of frames decoded before the first prediction, not the whole video
        assert first[0] == 1 and len(consumed) == max(n, 2)
        masks[n] = [first[1], *(m for _, m in out)]
        assert order == list(range(9))  # on_frame sees frame t right before its prediction
        assert ex.calls == ([1] * 9 if n == 1 else [4, 4, 1])
    assert len(masks[1]) == len(masks[4]) == 8
    for a, b in zip(masks[1], masks[4]):
        np.testing.assert_array_equal(a, b)
    assert any(len(np.unique(m)) == 3 for m in masks[4])  # the masks are not trivial


def test_feature_extractor_refuses_zero_batch_frames():
    from eval_layouts import ColourEncoder

    with pytest.raises(VideorepError, match="--batch-frames 0: must be at least 1"):
        FeatureExtractor(ColourEncoder(), (64, 96), batch_frames=0)


def test_encoder_dtype_auto_is_bf16_only_on_native_bf16_cpus():
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_encoder_dtype("auto", cpu, native_bf16=True) == "bf16"
    assert resolve_encoder_dtype("auto", cpu, native_bf16=False) == "fp32"
    assert resolve_encoder_dtype("auto", gpu, native_bf16=True) == "fp32"
    assert resolve_encoder_dtype("bf16", gpu, native_bf16=False) == "bf16"
    assert resolve_encoder_dtype("fp32", cpu, native_bf16=True) == "fp32"
    with pytest.raises(VideorepError, match="--encoder-dtype 'fp16': expected one of auto"):
        resolve_encoder_dtype("fp16", cpu)


def test_settings_record_the_decisions_not_the_flags():
    parser = _parser()
    args = parser.parse_args(["eval", "davis", "--root", "R", "--out", "O", "--device", "cpu"])
    got = commands._settings(args)
    expect = resolve_encoder_dtype(commands.DEFAULT_ENCODER_DTYPE, torch.device("cpu"))
    assert (got["device"], got["batch_frames"], got["encoder_dtype"]) == ("cpu", 1, expect)
    args = parser.parse_args(
        ["eval", "vip", "--root", "R", "--out", "O", "--device", "cpu", "--encoder-dtype", "bf16"]
        + ["--batch-frames", "3"]
    )
    got = commands._settings(args)
    assert (got["device"], got["batch_frames"], got["encoder_dtype"]) == ("cpu", 3, "bf16")


def test_feature_cache_keys_hold_dtype_and_weights_and_hits_come_back_on_the_input_device():
    from videorep.backbones import load_encoder

    encoder = load_encoder("random_vit_tiny16", "random")
    other = load_encoder("random_vit_tiny16", "random")
    with torch.no_grad():
        other.vit.blocks[0].mlp.fc1.bias.add_(1.0)  # another checkpoint of the same backbone
    assert weights_fingerprint(encoder) != weights_fingerprint(other)
    cached = CachingEncoder(encoder)
    x = torch.randn(2, 3, 32, 32)
    fp32 = cached(x)
    assert (cached.misses, cached.hits) == (1, 0)
    again = cached(x)
    assert (cached.misses, cached.hits) == (1, 1) and again.device == x.device
    torch.testing.assert_close(again, fp32, rtol=0, atol=0)
    encoder.autocast_dtype = torch.bfloat16
    bf16 = cached(x)  # a different dtype is a different entry, computed afresh
    assert (cached.misses, cached.hits) == (2, 1)
    assert not torch.equal(bf16, fp32)
    assert CachingEncoder(other).key(x) != CachingEncoder(encoder).key(x)
    assert len(cached.cache) == 2 and all(t.device.type == "cpu" for t in cached.cache.values())


def test_feature_cache_directory_entries_differ_by_dtype(tmp_path: Path):
    from videorep.backbones import load_encoder

    encoder = load_encoder("random_vit_tiny16", "random")
    x = torch.randn(1, 3, 32, 32)
    CachingEncoder(encoder, tmp_path)(x)
    encoder.autocast_dtype = torch.bfloat16
    CachingEncoder(encoder, tmp_path)(x)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    reread = CachingEncoder(encoder, tmp_path)
    reread(x)
    assert (reread.hits, reread.misses) == (1, 0)


@pytest.mark.parametrize("task", ["vip", "jhmdb"])
def test_vip_and_jhmdb_batched_match_one_by_one(task, tmp_path):
    from eval_layouts import ColourEncoder, make_jhmdb, make_vip

    from videorep.eval.jhmdb import run_jhmdb
    from videorep.eval.propagation import resolve_config
    from videorep.eval.vip import run_vip

    if task == "vip":
        root = make_vip(tmp_path / "VIP", videos=("v1",), n_frames=7, every=3)
        run = run_vip
    else:
        root = make_jhmdb(tmp_path / "JHMDB", videos=("wave/a",), n_frames=5)
        run = run_jhmdb
    reports = []
    for n in (1, 3):
        ex = FeatureExtractor(ColourEncoder(patch_size=4), (96, 112), batch_frames=n)
        rep = run(
            root,
            ex,
            resolve_config("dino-paper-params", task),
            tmp_path / f"o{n}",
            log=lambda s: None,
        )
        reports.append(rep["per_sequence"])
    for a, b in zip(*reports):
        a.pop("seconds", None), b.pop("seconds", None)
        assert a == b


def test_auto_is_the_default_encoder_dtype_of_the_dense_commands_and_the_method():
    """bf16 on native-bf16 CPUs became the default (9-sequence development set: -0.011 J&F)."""
    from videorep.backbones import load_encoder
    from videorep.cli import build_parser
    from videorep.methods.cosettle import CoSettleConfig
    from videorep.methods.cosettle.method import CoSettle
    from videorep.utils.encoder_dtype import apply_encoder_dtype

    parser = build_parser()
    for argv in (
        ["eval", "davis", "--root", "R", "--out", "O"],
        ["eval", "jhmdb", "--root", "R", "--out", "O"],
        ["propagate", "--video", "v", "--mask", "m", "--out", "o"],
        ["features", "--input", "v", "--out", "o"],
        ["demo"],
        ["analyze", "tradeoff", "--videos", "v", "--out", "o"],
        ["analyze", "shortcut", "--out", "o"],
    ):
        assert parser.parse_args(argv).encoder_dtype == "auto", argv
    assert CoSettleConfig().encoder_dtype == "auto"
    # the method decides auto for the device the encoder is on, and says what it chose
    encoder = load_encoder("random_vit_tiny16")
    expect = resolve_encoder_dtype("auto", torch.device("cpu"))
    assert CoSettle(encoder, CoSettleConfig()).encoder_dtype == expect
    assert (encoder.autocast_dtype is None) == (expect == "fp32")
    assert CoSettle(encoder, CoSettleConfig(encoder_dtype="fp32")).encoder_dtype == "fp32"
    assert encoder.autocast_dtype is None
    assert (
        apply_encoder_dtype(encoder, "bf16") == "bf16" and encoder.autocast_dtype == torch.bfloat16
    )

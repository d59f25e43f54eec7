"""Co-Settle projection heads ``g`` and their export format.

As in the authors' released ``ST_adapter.py``:

- ``linear``: Linear(d, d) -> Tanh -> LayerNorm(d). With bias that is d*d + 3d parameters:
  592,128 at d = 768 (the paper's "0.59M").
- ``mlp2``: Linear -> Tanh -> Linear -> LayerNorm.
- ``mlp3``: Linear -> Tanh -> Linear -> Tanh -> Linear -> LayerNorm.

Initialisation (``init``): in the authors' repository the head is built inside each backbone's
model file and initialised by that backbone's own init code, so it depends on the family
(:data:`FAMILY_INIT`, ``init="auto"``, the default of ``train cosettle``): Xavier-uniform weights
with zero bias for MAE (``models_mae.py``) and MoCo v3 (``vit_moco.py``); PyTorch's default
``nn.Linear`` init (Kaiming-uniform ``a = sqrt(5)``, uniform bias) for CLIP; truncated normal
(std 0.02, zero bias) for DINO, iBOT, BLIP, I-JEPA, DINOv2 and the rest. LayerNorm starts at
weight 1 / bias 0 in every case. ``identity`` (every Linear ``W = 0.05 I``, zero bias; the CPU
recipe's) is videorep's own: the head then starts as ``LayerNorm(z)``, at the frozen features.

A trained head is exported as ``projection.safetensors`` + ``config.json`` in one folder, which
evaluation loads with :func:`load_projection` (``--projection DIR``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from videorep.errors import VideorepError

HEADS = ("linear", "mlp2", "mlp3")
INITS = ("auto", "trunc_normal", "xavier_uniform", "torch_default", "identity")
#: the head init of the authors' repository per backbone family (``init="auto"``)
FAMILY_INIT = {
    "mae": "xavier_uniform",
    "mocov3": "xavier_uniform",
    "mocov3_base": "xavier_uniform",
    "clip": "torch_default",
}


def resolve_init(init: str, family: str | None) -> str:
    """``init`` with ``"auto"`` replaced by the family's (:data:`FAMILY_INIT`, else trunc-normal)."""
    if init != "auto":
        return init
    return FAMILY_INIT.get(family or "", "trunc_normal")


IDENTITY_GAIN = 0.05
MAX_DIM = 8192  # widest encoder a projection can be loaded for (ViT-G is 1536)


class ProjectionHead(nn.Module):
    """Token-wise projection ``[B, N, d] -> [B, N, d]``.

    ``kind="linear"`` is the paper's head (Linear -> Tanh -> LayerNorm, as ``ST_adapter.py``).
    ``init`` is resolved already (:func:`resolve_init`): the paper's code initialises the head
    with the backbone family's own init, which is trunc-normal only for some families (DINO,
    iBOT, BLIP, I-JEPA, DINOv2); MAE and MoCo v3 use Xavier-uniform, CLIP PyTorch's default.
    """

    def __init__(self, dim: int, kind: str = "linear", init: str = "trunc_normal") -> None:
        super().__init__()
        if kind not in HEADS:
            raise VideorepError(f"unknown head {kind!r}; choose one of {', '.join(HEADS)}")
        if init not in INITS or init == "auto":
            raise VideorepError(
                f"head init {init!r}: choose one of {', '.join(INITS[1:])} ('auto' is resolved "
                "from the backbone family by resolve_init first)"
            )
        self.dim, self.kind, self.init = dim, kind, init
        self.input_norm = "family"  # how the encoder's input was normalised in training
        self.source = ""  # where a loaded head came from, for error messages
        n_linear = {"linear": 1, "mlp2": 2, "mlp3": 3}[kind]
        layers: list[nn.Module] = []
        for i in range(n_linear):
            layers.append(nn.Linear(dim, dim, bias=True))
            # tanh after the first linear of every head, and between the linears of mlp3
            if i == 0 or (kind == "mlp3" and i == 1):
                layers.append(nn.Tanh())
        layers.append(nn.LayerNorm(dim))
        self.net = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.net:
            if isinstance(m, nn.Linear):
                if self.init == "torch_default":  # nn.Linear's own (CLIP)
                    m.reset_parameters()
                    continue
                if self.init == "identity":
                    # scaled identity: tanh stays in its linear range for encoder tokens of std
                    # ~2 (DINOv2), so the head starts as LayerNorm(z), the frozen features
                    # re-centred per token
                    nn.init.eye_(m.weight)
                    m.weight.data.mul_(IDENTITY_GAIN)
                elif self.init == "xavier_uniform":  # MAE models_mae.py, MoCo v3 vit_moco.py
                    nn.init.xavier_uniform_(m.weight)
                else:
                    nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[-1] != self.dim:  # every path (CLI, API, demo) gets this check
            where = f"{self.source}: " if self.source else ""
            raise VideorepError(
                f"{where}projection width {self.dim} does not match the encoder width "
                f"{tokens.shape[-1]} (a head trained on another backbone?)"
            )
        return self.net(tokens)

    def config(self) -> dict:
        return {"dim": self.dim, "kind": self.kind, "init": self.init}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def save_projection(head: ProjectionHead, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Write ``projection.safetensors`` and ``config.json`` into ``out_dir`` (atomically)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    tmp = out / f".projection.{os.getpid()}.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, out / "projection.safetensors")
    config = {"format": "videorep-projection-v1", **head.config(), **(extra or {})}
    tmp_cfg = out / f".config.{os.getpid()}.tmp"
    tmp_cfg.write_text(json.dumps(config, indent=2))
    os.replace(tmp_cfg, out / "config.json")
    return out


def load_projection(path: str | Path, expect_dim: int | None = None) -> ProjectionHead:
    """Load a projection exported by :func:`save_projection` (a folder or its ``config.json``).

    Raises a clear error when the folder is incomplete or the head's width differs from the
    encoder's (``expect_dim``), e.g. a head trained on ViT-B (768) given to ViT-S (384).
    """
    from safetensors.torch import load_file

    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    cfg_path, weights = folder / "config.json", folder / "projection.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise VideorepError(
            f"{folder}: not a projection folder (needs config.json and projection.safetensors)"
        )
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError(f"config.json holds a {type(config).__name__}, not an object")
        dim = int(config["dim"])
        if not 0 < dim <= MAX_DIM:
            raise ValueError(f"dim {dim} outside 1..{MAX_DIM}")
        head = ProjectionHead(dim, config.get("kind", "linear"))
        state = load_file(str(weights))
    except VideorepError as exc:
        raise VideorepError(f"{cfg_path}: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise VideorepError(f"{folder}: unreadable projection ({exc})") from None
    except Exception as exc:  # safetensors raises its own errors on a truncated file
        raise VideorepError(f"{weights}: corrupt or truncated projection ({exc})") from None
    if expect_dim is not None and head.dim != expect_dim:
        backbone = config.get("backbone", "another backbone")
        raise VideorepError(
            f"{folder}: projection width {head.dim} (trained on {backbone}) does not match the "
            f"encoder width {expect_dim}"
        )
    head.source = f"{folder} (trained on {config.get('backbone', 'another backbone')})"
    # heads saved before the setting existed were trained with the family's statistics
    head.input_norm = config.get("input_norm", "family")
    missing, unexpected = head.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise VideorepError(
            f"{weights}: does not fit a {head.kind} head: missing {missing}, unexpected {unexpected}"
        )
    head.eval()
    return head

"""Co-Settle's settings: the method (:class:`CoSettleConfig`) and its data
(:class:`CoSettleDataConfig`). The fields define the ``videorep train cosettle`` flags and the
``method_config`` / ``data`` sections of a run's ``config.json``; :func:`load_recipe` reads a
shipped recipe (``recipes/NAME.yaml``) in the same layout.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from videorep.backbones.pos import PEA_MODES
from videorep.backbones.registry import DEFAULT_BACKBONE
from videorep.errors import VideorepError
from videorep.methods.cosettle.heads import HEADS, INITS
from videorep.methods.cosettle.losses import REGULARIZERS
from videorep.methods.sources import SourcesConfig
from videorep.utils.config import load_file, setting
from videorep.utils.encoder_dtype import ENCODER_DTYPES

RECIPES = Path(__file__).parent / "recipes"
CROPS = ("authors", "full-res")
INPUT_NORMS = ("authors", "family")


@dataclass
class CoSettleConfig:
    """Every knob of the method (paper defaults)."""

    backbone: str = setting(DEFAULT_BACKBONE, help="frozen image encoder (videorep backbones)")
    checkpoint: str | None = setting(None, help="backbone checkpoint (released format)")
    head: str = setting("linear", choices=HEADS, help="projection head")
    head_init: str = setting(
        "auto",
        choices=INITS,
        help="head initialisation. auto (the paper's code): the backbone family's own init - "
        "Xavier-uniform for MAE and MoCo v3, PyTorch's nn.Linear default for CLIP, "
        "trunc-normal std 0.02 for DINO, iBOT, BLIP, I-JEPA, DINOv2 and the rest; identity "
        "(0.05 I) is the CPU recipe's, not the paper's",
    )
    input_norm: str = setting(
        "authors",
        choices=INPUT_NORMS,
        help="CLIP / BLIP input statistics: authors (the paper's code: ImageNet mean/std for "
        "every backbone) or family (each family's own, e.g. CLIP's; videorep's former default)",
    )
    tau: float = setting(0.03, help="walk temperature (0.03)")
    pool: int = setting(
        2,
        help="token average-pooling window: 2 is the paper's (14x14 -> 7x7); the CPU recipe "
        "uses 1 (the full grid)",
    )
    reg: str = setting("kl", choices=tuple(REGULARIZERS), help="regulariser")
    lambda_reg: float = setting(3.0, help="regulariser weight (3)")
    pea: bool = setting(True, flag="--no-pea", help="disable PEA (shows the shortcut)")
    pea_alpha: float = setting(10.0, help="PEA interpolation ratio (10)")
    pea_mode: str = setting("random", choices=PEA_MODES, help="PEA crop placement")
    frames: int = setting(2, help="frames per walk (2 = the paper)")
    encoder_dtype: str = setting(
        "auto",
        choices=ENCODER_DTYPES,
        help="frozen encoder precision: auto (bf16 on CPUs with native bf16, else fp32), fp32, "
        "bf16",
    )

    def validate(self) -> None:
        if self.reg not in REGULARIZERS:
            raise VideorepError(f"unknown regulariser {self.reg!r}; choose kl, mse or none")
        if self.pea_mode not in PEA_MODES:
            raise VideorepError(f"unknown PEA mode {self.pea_mode!r}; choose {PEA_MODES}")
        if self.frames < 2:
            raise VideorepError(f"--frames must be >= 2, got {self.frames}")
        if self.tau <= 0:
            raise VideorepError(f"--tau must be positive, got {self.tau}")
        if self.pool < 1:
            raise VideorepError(f"--pool must be >= 1, got {self.pool}")
        if self.input_norm not in INPUT_NORMS:
            raise VideorepError(
                f"--input-norm {self.input_norm!r}: expected one of {', '.join(INPUT_NORMS)}"
            )
        if self.head_init not in INITS:
            raise VideorepError(
                f"--head-init {self.head_init!r}: expected one of {', '.join(INITS)}"
            )
        if self.encoder_dtype not in ENCODER_DTYPES:
            raise VideorepError(
                f"--encoder-dtype must be one of {', '.join(ENCODER_DTYPES)}, "
                f"not {self.encoder_dtype}"
            )

    @classmethod
    def from_dict(cls, data: dict) -> CoSettleConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class CoSettleDataConfig(SourcesConfig):
    """Training samples: ``frames`` frames of a video, ``delta`` of its length apart, one crop.

    ``frames`` follows :attr:`CoSettleConfig.frames` (the one ``--frames`` flag sets both).
    """

    delta: float = setting(0.15, help="frame gap / video length (0.15)")
    size: int = setting(224, help="crop size (224)")
    crop: str = setting(
        "authors",
        choices=CROPS,
        help="authors (the paper's code): squash each frame to size x size, then one single-try "
        "RandomResizedCrop (scale 0.5-1, ratio 3/4-4/3); full-res: RandomResizedCrop (10 "
        "tries) from the frame at its own resolution (the CPU recipe's)",
    )
    frames: int = setting(2, cli=False)
    samples_per_video: int = setting(
        0,
        help="samples drawn from each video per epoch; 0 = 1, or as many as needed to fill "
        "one global batch when there are fewer videos",
    )
    view_bank: int = setting(
        0,
        metavar="K",
        help="encode K views per video once and train on the stored tokens (the CPU recipe's "
        "shortcut, 32; the paper draws fresh frame pairs every step: 0)",
    )

    def validate(self) -> None:
        super().validate()
        if self.crop not in CROPS:
            raise VideorepError(f"--crop {self.crop!r}: expected one of {', '.join(CROPS)}")


def load_recipe(name: str = "cpu") -> dict[str, dict[str, Any]]:
    """A shipped recipe: ``{"method_config": {...}, "data": {...}, "train": {...}}`` overrides.

    The same file works as ``videorep train cosettle --config`` (with ``--data`` and ``--out``).
    A recipe may also hold an ``evaluation`` section (``fuse_alpha``: how ``videorep demo``
    fuses the head with the frozen tokens), which training does not read.
    """
    path = RECIPES / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in RECIPES.glob("*.yaml"))
        raise VideorepError(f"unknown Co-Settle recipe {name!r}; known: {', '.join(known)}")
    return load_file(path)

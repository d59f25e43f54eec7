"""``videorep backbones`` and ``videorep features``: list the encoders, encode one image.

Handlers import torch (through the backbone modules) lazily so that ``videorep --help`` stays
fast. Input problems raise :class:`~videorep.errors.VideorepError`, which the CLI prints as one
line with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from videorep.backbones.registry import DEFAULT_BACKBONE
from videorep.errors import VideorepError

if TYPE_CHECKING:
    import numpy as np


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``backbones`` and ``features`` subcommands to the ``videorep`` parser."""
    p = subparsers.add_parser(
        "backbones",
        help="list the registered image encoders",
        description="List the registered encoders with patch size, width and weight source.",
    )
    p.set_defaults(func=cmd_backbones)

    p = subparsers.add_parser(
        "features",
        help="encode one image into patch features (.npy)",
        description=(
            "Encode one image with a frozen encoder and write its patch tokens as an "
            "[h*w, D] float32 .npy array; prints 'h w D'."
        ),
    )
    p.add_argument(
        "--backbone", default=DEFAULT_BACKBONE, help=f"registered name (default {DEFAULT_BACKBONE})"
    )
    p.add_argument("--image", required=True, help="input image file (any format PIL reads)")
    p.add_argument(
        "--size",
        default=None,
        help="HxW input size in pixels, multiples of the patch size "
        "(default: the image size rounded to patch multiples)",
    )
    p.add_argument("--out", required=True, help="output .npy file")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint file in the backbone family's released format "
        "(default: the backbone's own weights source)",
    )
    p.set_defaults(func=cmd_features)


def format_backbones() -> str:
    """The ``videorep backbones`` table as text."""
    from videorep.backbones.registry import BACKBONES

    rows = [("name", "family", "patch", "width", "weights")]
    for name in sorted(BACKBONES):
        spec = BACKBONES[name]
        rows.append((name, spec.family, str(spec.patch_size), str(spec.embed_dim), spec.weights))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1])])
        + "  "
        + "  ".join([r[2].rjust(widths[2]), r[3].rjust(widths[3])])
        + "  "
        + r[4]
        for r in rows
    ]
    return "\n".join(lines)


def cmd_backbones(args: argparse.Namespace) -> int:
    """Print the registered backbones."""
    print(format_backbones())
    return 0


def encode_image(
    backbone: str,
    image: str | Path,
    size: tuple[int, int] | None = None,
    checkpoint: str | Path | None = None,
) -> tuple[np.ndarray, int, int]:
    """Encode one image file: returns ``(features [h*w, D] float32 ndarray, h, w)``.

    The image is read as RGB, resized (bicubic, antialiased) to ``size`` (default: its own size
    rounded to patch multiples) and ImageNet-normalised; the encoder applies its family's own
    normalisation on top. A ``size`` that is not a multiple of the patch size is an error.
    """
    import torch

    from videorep.backbones.loading import load_encoder
    from videorep.backbones.registry import get_spec
    from videorep.data.images import load_image, normalize, resize, snap_to_patch, to_tensor

    spec = get_spec(backbone)  # an unknown name fails before any file is read
    rgb = load_image(image)
    if not rgb.flags.writeable:  # a read-only view of PIL's buffer: torch warns on those
        rgb = rgb.copy()
    encoder = load_encoder(backbone, checkpoint=checkpoint)
    if size is None:
        size = snap_to_patch((rgb.shape[0], rgb.shape[1]), spec.patch_size)
    h, w = encoder.grid(*size)
    x = normalize(resize(to_tensor(rgb), size))[None]
    with torch.inference_mode():
        tokens = encoder(x)[0]
    return tokens.numpy().astype("float32", copy=False), h, w


def cmd_features(args: argparse.Namespace) -> int:
    """Write the patch features of one image and print ``h w D``."""
    import numpy as np

    from videorep.data.images import parse_size

    size = parse_size(args.size) if args.size else None
    out = Path(args.out)
    if not out.parent.is_dir():
        raise VideorepError(f"{out}: output directory {out.parent} does not exist")
    feats, h, w = encode_image(args.backbone, args.image, size, args.checkpoint)
    try:
        with open(out, "wb") as fh:  # exactly this path (np.save would append .npy)
            np.save(fh, feats)
    except OSError as exc:
        raise VideorepError(f"{out}: cannot write features ({exc.strerror or exc})") from None
    print(f"{h} {w} {feats.shape[1]}")
    sys.stdout.flush()
    return 0

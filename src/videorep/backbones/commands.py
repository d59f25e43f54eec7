"""``videorep backbones``: list the encoders; :func:`encode_image` encodes one image.

``videorep features`` (which uses :func:`encode_image` for ``--image``) lives in
:mod:`videorep.commands`, beside the Python API it drives.

Handlers import torch (through the backbone modules) lazily so that ``videorep --help`` stays
fast. Input problems raise :class:`~videorep.errors.VideorepError`, which the CLI prints as one
line with exit status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``backbones`` subcommand to the ``videorep`` parser."""
    p = subparsers.add_parser(
        "backbones",
        help="list the registered image encoders",
        description="List the registered encoders with patch size, width and weight source.",
    )
    p.set_defaults(func=cmd_backbones)


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

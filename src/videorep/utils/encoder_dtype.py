"""The frozen encoder's compute dtype: ``--encoder-dtype {auto,fp32,bf16}`` as a pure decision.

``auto`` is ``bf16`` on a CPU that computes bfloat16 natively (AVX512-BF16 or AMX-BF16, see
:func:`videorep.utils.device.cpu_has_native_bf16`) and ``fp32`` everywhere else, CUDA included
(there bf16 is a choice to make explicitly). The encoder then runs under ``torch.autocast`` to
that dtype; what follows it (projection, propagation, losses) stays float32.

``auto`` is the default of the dense commands (``eval davis|vip|jhmdb``, ``propagate``,
``features``, ``train cosettle``, ``demo``, ``analyze``) and of ``videorep.load_encoder`` (the
video-level ``eval`` commands keep float32, their cached features are keyed without a dtype): on the
9-sequence DAVIS development set bf16 moved the mean J&F by -0.011 (largest single sequence
-0.22; docs/results/2026-12-03-encoder-bf16.md). ``--encoder-dtype fp32`` restores float32
everywhere; the tests that anchor numbers pass it.
"""

from __future__ import annotations

import torch

from videorep.errors import VideorepError

ENCODER_DTYPES = ("auto", "fp32", "bf16")
DEFAULT_ENCODER_DTYPE = "auto"
ENCODER_DTYPE_HELP = (
    "encoder compute dtype: auto (default: bf16 on CPUs with native bf16 - AVX512-BF16/AMX - "
    "else fp32, also on CUDA), fp32, or bf16 (autocast; what follows the encoder stays fp32)"
)


def resolve_encoder_dtype(
    spec: str | None, device: torch.device | str, native_bf16: bool | None = None
) -> str:
    """``"fp32"`` or ``"bf16"`` for ``spec`` (``auto``, ``fp32``, ``bf16``) on ``device``.

    ``native_bf16`` defaults to this machine's :func:`~videorep.utils.device.cpu_has_native_bf16`
    (tests pass it). An unknown ``spec`` is one :class:`VideorepError`.
    """
    spec = (spec or "auto").strip().lower()
    if spec not in ENCODER_DTYPES:
        raise VideorepError(
            f"--encoder-dtype {spec!r}: expected one of {', '.join(ENCODER_DTYPES)}"
        )
    if spec != "auto":
        return spec
    if torch.device(device).type != "cpu":
        return "fp32"
    if native_bf16 is None:
        from videorep.utils.device import cpu_has_native_bf16

        native_bf16 = cpu_has_native_bf16()
    return "bf16" if native_bf16 else "fp32"


def torch_dtype(name: str) -> torch.dtype | None:
    """The autocast dtype of a resolved encoder dtype (``None`` for fp32: no autocast)."""
    return {"fp32": None, "bf16": torch.bfloat16}[name]


def add_encoder_dtype_argument(
    parser,  # noqa: ANN001
    default: str = DEFAULT_ENCODER_DTYPE,
    note: str = "",
) -> None:
    """``--encoder-dtype {auto,fp32,bf16}`` on an argparse parser (one definition for all);
    ``note`` is appended to the help."""
    parser.add_argument(
        "--encoder-dtype",
        choices=list(ENCODER_DTYPES),
        default=default,
        help=ENCODER_DTYPE_HELP + note,
    )


def apply_encoder_dtype(
    encoder,
    spec: str | None,
    device: torch.device | str | None = None,  # noqa: ANN001
) -> str:
    """Resolve ``spec`` on ``device`` (default: where ``encoder``'s parameters are), set the
    encoder's autocast dtype accordingly and return the decision (``fp32`` / ``bf16``)."""
    if device is None:
        param = next(iter(encoder.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
    name = resolve_encoder_dtype(spec, device)
    encoder.autocast_dtype = torch_dtype(name)
    return name

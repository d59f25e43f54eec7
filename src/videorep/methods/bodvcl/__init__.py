"""BOD-VCL: Koopman-based static/dynamic decoupling with bi-level optimisation (*Self-Supervised
Video Representation Learning in a Heuristic Decoupled Perspective*, the BOD-VCL paper).

Public entry points: :func:`build_bodvcl` / :class:`BODVCL` (the trainer ``Method``),
:func:`add_train_arguments` (CLI flags), :func:`koopman_operator` / :func:`koopman_split` /
:func:`prediction_loss` (Eq. 18-21), :func:`build_encoder` (per-frame video encoders).
Imports are lazy so that ``import videorep.methods.bodvcl`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BODVCL",
    "BODVCLConfig",
    "add_train_arguments",
    "build_bodvcl",
    "build_encoder",
    "config_from_args",
    "koopman_operator",
    "koopman_split",
    "prediction_loss",
]

_WHERE = {
    "BODVCL": "method",
    "BODVCLConfig": "method",
    "add_train_arguments": "method",
    "build_bodvcl": "method",
    "config_from_args": "method",
    "build_encoder": "encoders",
    "koopman_operator": "koopman",
    "koopman_split": "koopman",
    "prediction_loss": "koopman",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(name)

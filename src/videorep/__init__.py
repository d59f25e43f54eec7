"""videorep: self-supervised video representation learning (Co-Settle, BOD-VCL) and evaluation.

The Python API (:mod:`videorep.api`) is re-exported here lazily: ``import videorep`` imports
neither torch nor the models; the first use of ``videorep.load_encoder`` (or any other name of
``videorep.api.__all__``) imports :mod:`videorep.api` through ``importlib`` (the package root
itself stays at the bottom of the layering).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from videorep.errors import VideorepError

if TYPE_CHECKING:  # for type checkers and IDEs only; nothing is imported at run time
    from videorep.api import (  # noqa: F401
        DEFAULT_SIZE,
        Features,
        davis_jf,
        extract_features,
        load_encoder,
        load_projection,
        propagate,
        read_mask,
    )

__version__ = "0.1.0"

_API = (
    "DEFAULT_SIZE",
    "Features",
    "davis_jf",
    "extract_features",
    "load_encoder",
    "load_projection",
    "propagate",
    "read_mask",
)
__all__ = ["VideorepError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    """Resolve the API names on first use (PEP 562)."""
    if name in _API:
        value = getattr(importlib.import_module("videorep.api"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'videorep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))

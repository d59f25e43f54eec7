"""Methods: Co-Settle (projection on a frozen image encoder) and BOD-VCL (Koopman V-CL).

Each method is one folder that owns its config, dataset builder, training entry point and
export, and one line of :data:`METHODS`: the module holding its
:class:`~videorep.train.method.MethodPlugin` as ``PLUGIN``. ``videorep train`` loops over
:data:`METHODS`; modules are imported only when a method is loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from videorep.errors import VideorepError

if TYPE_CHECKING:
    from videorep.train.method import MethodPlugin

#: method name -> module with its ``PLUGIN``
METHODS: dict[str, str] = {
    "cosettle": "videorep.methods.cosettle.plugin",
    "bodvcl": "videorep.methods.bodvcl.plugin",
}


def load_method(name: str) -> MethodPlugin:
    """The :class:`~videorep.train.method.MethodPlugin` registered as ``name``."""
    if name not in METHODS:
        raise VideorepError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return importlib.import_module(METHODS[name]).PLUGIN

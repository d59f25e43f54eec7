"""Method-agnostic pieces of ``videorep train`` (the command itself is
:mod:`videorep.methods.commands`, above the methods it lists)."""

from __future__ import annotations


def run_distributed(body, *args):  # noqa: ANN001, ANN201
    """Run ``body(*args)`` inside the ``torchrun`` process group (if any), then clean it up."""
    from videorep.train.distributed import cleanup, init_from_env

    init_from_env()
    try:
        return body(*args)
    finally:
        cleanup()

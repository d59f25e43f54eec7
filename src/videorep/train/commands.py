"""Method-agnostic pieces of ``videorep train`` (the command itself is
:mod:`videorep.methods.commands`, above the methods it lists)."""

from __future__ import annotations


def run_distributed(body, *args, device: str = "auto"):  # noqa: ANN001, ANN201
    """Run ``body(*args)`` inside the ``torchrun`` process group (if any), then clean it up.

    ``device`` (the run's ``--device``) picks the backend: nccl for GPUs, gloo for the CPU.
    """
    from videorep.train.distributed import cleanup, init_from_env

    init_from_env(device=device)
    try:
        return body(*args)
    finally:
        cleanup()

"""``python -m videorep.train.launch``: ``torchrun`` whose Ctrl-C ends with one line.

It takes exactly torchrun's arguments and runs torchrun's own code (``torch.distributed.run``)::

    python -m videorep.train.launch --standalone --nproc-per-node 2 -m videorep.cli train ...

Why: a Ctrl-C in the terminal reaches the ``torchrun`` agent only (it starts every worker in a
session of its own). The agent forwards SIGINT to the workers, which finish the current step,
save the checkpoint (rank 0) and exit 130 after one ``videorep: interrupted at step k/N ...``
line; the agent then re-raises its ``SignalException``, i.e. plain ``torchrun`` ends with a
Python traceback and exit status 1. This wrapper ends after that one line, with exit status 130
(128 + SIGINT). Everything else (torchrun's log lines and failure reports) is unchanged.

The agent kills workers that have not exited ``TORCH_ELASTIC_SHUTDOWN_TIMEOUT`` seconds (30)
after the forwarded Ctrl-C; raise it when one step plus a checkpoint takes longer. A SIGKILLed
run still resumes from its last checkpoint (written atomically).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.run import main as torchrun

    try:
        torchrun(list(argv) if argv is not None else None)
    except SignalException as exc:  # the workers have reported (torchrun's log says the rest)
        return 128 + int(exc.sigval)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

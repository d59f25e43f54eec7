"""Progress bars that stay quiet when nobody watches.

Interactive runs (stderr is a terminal) redraw at most once a second; non-interactive runs (CI,
a SLURM job, ``make demo > log``) at most every :data:`QUIET_INTERVAL_S` seconds, so a log gets a
handful of progress lines rather than one per step. Use :func:`progress_bar` for every bar and
:func:`set_postfix` (never ``bar.set_postfix`` with its default ``refresh=True``, which redraws at
once) for the numbers shown beside it: the postfix then appears at the bar's own next refresh.
"""

from __future__ import annotations

import sys
from typing import IO, Any

#: seconds between redraws when stderr is not a terminal
QUIET_INTERVAL_S = 30.0
#: seconds between redraws on a terminal
INTERACTIVE_INTERVAL_S = 1.0


def is_interactive(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (default ``sys.stderr``) is a terminal someone watches."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced stream
        return False


def progress_bar(total: int | None = None, *, desc: str, initial: int = 0, **kwargs: Any) -> Any:
    """A ``tqdm`` bar over ``total`` items that redraws at most every 30 s when non-interactive.

    ``kwargs`` go to ``tqdm`` (``file=`` chooses the stream; default stderr). On a terminal the
    bar redraws at most once a second; elsewhere at most every :data:`QUIET_INTERVAL_S` seconds,
    plus once when it closes.
    """
    from tqdm.auto import tqdm

    interactive = is_interactive(kwargs.get("file"))
    kwargs.setdefault("mininterval", INTERACTIVE_INTERVAL_S if interactive else QUIET_INTERVAL_S)
    kwargs.setdefault("dynamic_ncols", interactive)
    return tqdm(total=total, initial=initial, desc=desc, **kwargs)


def set_postfix(bar: Any, **values: Any) -> None:
    """Show ``values`` beside ``bar`` from its next own refresh on (no redraw now)."""
    bar.set_postfix(refresh=False, **values)

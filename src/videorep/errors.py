"""User-facing errors.

Every problem with a user's input (a file, a name, a size) is raised as a ``VideorepError`` whose
message names the offending file or value and what is wrong with it. The CLI prints that one line
and exits with status 2 instead of showing a traceback.
"""

from __future__ import annotations


class VideorepError(Exception):
    """An error in the user's input or environment, with a message meant for the user."""


class Interrupted(VideorepError):
    """A run stopped on request (Ctrl-C) after saving its work; the CLI exits with 130.

    ``announce`` is False where another process reports the same stop (the ranks other than 0
    of a ``torchrun`` job), so the message is printed once.
    """

    def __init__(self, message: str, announce: bool = True) -> None:
        super().__init__(message)
        self.announce = announce

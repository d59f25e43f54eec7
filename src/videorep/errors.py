"""User-facing errors.

Every problem with a user's input (a file, a name, a size) is raised as a ``VideorepError`` whose
message names the offending file or value and what is wrong with it. The CLI prints that one line
and exits with status 2 instead of showing a traceback.
"""

from __future__ import annotations


class VideorepError(Exception):
    """An error in the user's input or environment, with a message meant for the user."""

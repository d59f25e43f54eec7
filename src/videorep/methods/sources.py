"""Data settings every video method shares: where the videos are and how fast to decode them."""

from __future__ import annotations

from dataclasses import dataclass

from videorep.errors import VideorepError
from videorep.utils.config import setting


@dataclass
class SourcesConfig:
    """Training videos (``videorep.data.sources.discover_sources``); methods extend it."""

    paths: list[str] = setting(
        default_factory=list,
        flag="--data",
        nargs="+",
        metavar="PATH",
        help="video files, frame folders (Kinetics or DAVIS layout) or .txt lists",
    )
    fps: float = setting(2.0, help="decoding rate for video files (2)")

    def __post_init__(self) -> None:
        self.paths = [str(p) for p in self.paths]

    def validate(self) -> None:
        if not self.paths:
            raise VideorepError(
                "no training data: give --data PATH [PATH ...] (or data.paths in --config)"
            )

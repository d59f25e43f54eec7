"""Reading a few frames of a video file with PyAV, at a target sampling rate.

Time model: the video's first frame is at time 0 (the stream's start time is subtracted) and
sample ``i`` at a target rate ``fps`` is at ``t_i = i / fps`` seconds. The frame returned for
``t`` is the first decoded frame whose timestamp is ``>= t`` (with half a time-base unit, at most
1 ms, of rounding tolerance), so for a constant-rate video sampled at its own rate, sample ``i``
is frame ``i``; for a variable-frame-rate video the timestamps decide. The number of samples at
``fps`` is the number of sample times that are not after the last frame's timestamp:
``floor(last_frame_time * fps) + 1``.

Cost: :func:`probe_video` reads container metadata and decodes one frame (to check the codec
and read the rotation); only when the duration or frame rate is missing does it scan the
packets (demuxing only, no decoding). :func:`read_frames` seeks to the keyframe before each
wanted time and decodes forward, so two frames of a long video cost two short decodes.

Rotation: the display matrix side data is applied (multiples of 90 degrees), so frames come
back upright with the shape a player would show.

Threads: decoding uses a single thread per stream (``thread_count = 1``), and every container
is closed before the function returns, so no FFmpeg thread is alive when a DataLoader forks its
workers and each worker decodes without spawning threads of its own. PyAV's Python log callback
is left disabled (the PyAV default), which avoids FFmpeg threads calling back into Python.

Limits: a still image behind a video extension (FFmpeg's ``image2`` / ``*_pipe`` demuxers) is
refused, and so is a stream or frame larger than ``videorep.data.images.MAX_IMAGE_PIXELS``.

Every failure is a :class:`~videorep.errors.VideorepError` whose message starts with the path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from videorep.data.files import file_size
from videorep.data.images import MAX_IMAGE_PIXELS, check_pixels
from videorep.errors import VideorepError

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v")
DEFAULT_FPS = 2.0
DECODE_THREADS = 1
"""FFmpeg decoder threads per stream; 1 keeps decoding fork-safe inside DataLoader workers."""

# A wanted time further ahead than this of the current decode position is reached by seeking
# rather than by decoding forward.
_SEEK_AHEAD_SECONDS = 1.0


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learnt about a video file.

    Attributes:
        path: the file.
        duration: seconds from the first frame's timestamp to the end of the last frame.
        native_fps: the stream's average frame rate.
        last_frame_time: timestamp of the last frame, seconds from the first frame.
        native_frames: number of frames in the file (from metadata or a packet count).
        fps: the target sampling rate ``num_frames`` refers to (``None``: native frames).
        num_frames: number of samples at ``fps`` (see the module docstring).
        width, height: decoded frame size after applying the rotation.
        rotation: counter-clockwise rotation in degrees applied to decoded frames.
        method: ``"metadata"`` or ``"packet scan"``: where duration/rate came from.
    """

    path: Path
    duration: float
    native_fps: float
    last_frame_time: float
    native_frames: int
    fps: float | None
    num_frames: int
    width: int
    height: int
    rotation: int
    method: str

    def times(self, indices: Sequence[int]) -> list[float]:
        """Sample indices at ``self.fps`` -> times in seconds from the first frame."""
        rate = self.fps if self.fps is not None else self.native_fps
        return [int(i) / rate for i in indices]


def count_samples(last_frame_time: float, fps: float) -> int:
    """Number of sample times ``i / fps`` in ``[0, last_frame_time]``."""
    return int(math.floor(max(last_frame_time, 0.0) * fps + 1e-6)) + 1


def _open(path: Path) -> av.container.InputContainer:
    if file_size(path, "video file") == 0:
        raise VideorepError(f"{path}: video file is empty (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideorepError(f"{path}: not a readable video ({_reason(exc)})") from None
    fmt = container.format.name or ""
    if fmt == "image2" or fmt.endswith("_pipe"):
        container.close()
        raise VideorepError(f"{path}: an image ({fmt} format), not a video")
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise VideorepError(f"{path}: no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    width = int(getattr(stream, "width", 0) or 0)  # no codec context: checked when decoding
    height = int(getattr(stream, "height", 0) or 0)
    if width * height > MAX_IMAGE_PIXELS:
        container.close()
        check_pixels(path, width, height, "video")
    stream.thread_type = "SLICE"
    stream.thread_count = DECODE_THREADS
    return container


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip() or type(exc).__name__


def _to_rgb(frame: av.VideoFrame, path: Path | None = None) -> np.ndarray:
    """Decoded frame -> upright ``[H, W, 3]`` uint8 RGB (frames over MAX_IMAGE_PIXELS refused)."""
    check_pixels(path, frame.width, frame.height, "video frame")
    rgb = frame.to_ndarray(format="rgb24")
    rotation = frame.rotation
    if rotation and rotation % 90 == 0:
        rgb = np.rot90(rgb, k=(rotation // 90) % 4)
    return np.ascontiguousarray(rgb)


def _scan_packets(container: av.container.InputContainer, stream: av.VideoStream):
    """Demux (no decode) every packet of ``stream``: (count, first pts, last pts, last duration)."""
    count, first, last, last_dur = 0, None, None, 0
    for packet in container.demux(stream):
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is None or packet.size == 0:
            continue
        count += 1
        first = ts if first is None else min(first, ts)
        if last is None or ts >= last:
            last, last_dur = ts, packet.duration or 0
    return count, first, last, last_dur


def probe_video(path: str | Path, fps: float | None = DEFAULT_FPS) -> VideoInfo:
    """Duration, native rate and number of samples at ``fps`` of a video file.

    Uses container metadata; when the duration or the frame rate is missing it counts packets
    (demux only). Decodes the first frame, to check that the video can be decoded and to learn
    its rotation and size. ``fps=None`` counts native frames.

    Raises:
        VideorepError: missing, empty, unreadable or truncated file, no video stream, or a
            stream with no decodable frame. The message names the file.
    """
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        tb = float(stream.time_base) if stream.time_base else 1e-6
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        native_fps = float(rate) if rate else 0.0
        duration = None
        if stream.duration:
            duration = stream.duration * tb
        elif container.duration:
            duration = container.duration / 1e6
            if stream.start_time is not None and container.start_time is not None:
                duration -= max(0.0, stream.start_time * tb - container.start_time / 1e6)
        method = "metadata"
        native_frames = int(stream.frames or 0)
        if duration and native_fps > 0:
            last_frame_time = max(0.0, duration - 1.0 / native_fps)
            if not native_frames:
                native_frames = max(1, int(round(duration * native_fps)))
        else:
            method = "packet scan"
            count, first, last, last_dur = _scan_packets(container, stream)
            if count == 0:
                raise VideorepError(f"{path}: video stream has no packets (empty or truncated)")
            last_frame_time = (last - first) * tb
            if native_fps <= 0:
                native_fps = (count - 1) / last_frame_time if last_frame_time > 0 else 1.0
            duration = last_frame_time + (last_dur * tb if last_dur else 1.0 / native_fps)
            native_frames = count
        if method == "metadata":
            _check_end(container, stream, path, last_frame_time)
        container.seek(stream.start_time or 0, stream=stream)
        first_frame = _first_frame(container, stream, path)
        rgb_shape = _to_rgb(first_frame, path).shape
    except VideorepError:
        raise
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as exc:
        raise VideorepError(f"{path}: unreadable video ({_reason(exc)})") from None
    finally:
        container.close()
    num = count_samples(last_frame_time, fps) if fps is not None else native_frames
    return VideoInfo(
        path=path,
        duration=float(duration),
        native_fps=native_fps,
        last_frame_time=float(last_frame_time),
        native_frames=native_frames,
        fps=fps,
        num_frames=num,
        width=int(rgb_shape[1]),
        height=int(rgb_shape[0]),
        rotation=int(first_frame.rotation or 0),
        method=method,
    )


def _check_end(container, stream, path: Path, last_frame_time: float) -> None:
    """Demux (no decode) from the keyframe before the last frame: its packet must be readable."""
    tb = float(stream.time_base)
    start = stream.start_time or 0
    target = start + int(math.floor(last_frame_time / tb))
    tol = max(1, int(round(1e-3 / tb)))
    last = None
    try:
        container.seek(target, stream=stream, backward=True, any_frame=False)
        for packet in container.demux(stream):
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None or packet.size == 0:
                continue
            last = ts if last is None else max(last, ts)
            if ts >= target - tol:
                return
    except av.FFmpegError as exc:
        raise VideorepError(
            f"{path}: truncated or corrupt near its end ({_reason(exc)}); "
            f"metadata says {last_frame_time:.2f}s"
        ) from None
    end = "none can be read there" if last is None else f"they stop at {(last - start) * tb:.2f}s"
    raise VideorepError(
        f"{path}: truncated: metadata says the last frame is at {last_frame_time:.2f}s "
        f"but the packets end early ({end})"
    )


def _first_frame(container, stream, path: Path) -> av.VideoFrame:
    for frame in container.decode(stream):
        return frame
    raise VideorepError(f"{path}: no decodable video frame (empty or truncated stream)")


def read_frames(path: str | Path, times_seconds: Sequence[float]) -> list[np.ndarray]:
    """Decode the frames shown at ``times_seconds`` (seconds from the first frame).

    For each time, returns the first frame whose timestamp is ``>= t`` (half a time-base unit,
    at most 1 ms, of rounding tolerance), found by seeking to the preceding keyframe and
    decoding forward. A later time is reached by decoding on, without a new seek, when no
    keyframe lies in between (judged from the demuxer's index), so several nearby frames cost
    one decode run.

    Returns:
        One upright ``[H, W, 3]`` uint8 RGB array per requested time, in the requested order.

    Raises:
        VideorepError: unreadable file, or a time past the decodable end of the video (e.g. a
            truncated file); the message names the file.
    """
    path = Path(path)
    if len(times_seconds) == 0:
        return []
    container = _open(path)
    try:
        stream = container.streams.video[0]
        tb = stream.time_base
        start = stream.start_time if stream.start_time is not None else 0
        # timestamps are rounded to the time base: allow half a unit, at most 1 ms
        tol = min(0.5 * float(tb), 1e-3) + 1e-9
        order = sorted(range(len(times_seconds)), key=lambda k: times_seconds[k])
        out: list[np.ndarray | None] = [None] * len(times_seconds)
        frames = None  # running decode iterator
        current = None  # last decoded frame
        current_ts = 0  # its timestamp (pts, or dts when a container gives no pts)
        for k in order:
            t = float(times_seconds[k])
            if t < 0:
                raise VideorepError(f"{path}: negative frame time {t}")
            t_eff = t - tol
            if current is not None and (current_ts - start) * float(tb) >= t_eff:
                out[k] = _to_rgb(current, path)
                continue
            if frames is None or _should_seek(stream, start, current_ts, t_eff):
                frames = _seek(container, stream, start, t_eff, tb)
                current = None
            found = None
            for frame in frames:
                ts = _timestamp(frame)
                if ts is None:
                    continue
                current, current_ts = frame, ts
                if (ts - start) * float(tb) >= t_eff:
                    found = frame
                    break
            if found is None:
                end = "no frame" if current is None else f"{(current_ts - start) * float(tb):.3f}s"
                raise VideorepError(
                    f"{path}: no frame at {t:.3f}s; decoding stops at {end} "
                    "(truncated or shorter than its metadata says)"
                )
            out[k] = _to_rgb(found, path)
        return out  # type: ignore[return-value]
    except VideorepError:
        raise
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as exc:
        raise VideorepError(f"{path}: decoding failed ({_reason(exc)})") from None
    finally:
        container.close()


def _should_seek(stream, start: int, current_pts: int, t: float) -> bool:
    """Seek only when a keyframe lies between the decode position and time ``t``.

    Uses the demuxer's index when it has one (no decoding, no I/O); otherwise seeks when ``t``
    is more than a second ahead.
    """
    tb = float(stream.time_base)
    target = start + int(math.floor(t / tb))
    try:
        entries = stream.index_entries
        if len(entries):
            i = entries.search_timestamp(target, backward=True)
            if i >= 0:
                return entries[i].timestamp > current_pts
    except (AttributeError, av.FFmpegError, IndexError, ValueError):
        pass
    return (target - current_pts) * tb > _SEEK_AHEAD_SECONDS


def _seek(container, stream, start: int, t: float, tb):
    """Seek to the keyframe at or before time ``t`` and return a decode iterator from there.

    If the demuxer lands after ``t`` (imprecise index), seeks from the beginning instead.
    """
    target = start + max(0, int(math.floor(t / float(tb))))
    container.seek(target, stream=stream, backward=True, any_frame=False)
    frames = container.decode(stream)
    first = next(frames, None)
    first_ts = None if first is None else _timestamp(first)
    if first_ts is not None and first_ts > target and target > start:
        container.seek(start, stream=stream, backward=True, any_frame=False)
        frames = container.decode(stream)
        first = next(frames, None)
    if first is None:
        return iter(())
    return _chain(first, frames)


def _timestamp(frame) -> int | None:
    return frame.pts if frame.pts is not None else getattr(frame, "dts", None)


def _chain(first, rest):
    yield first
    yield from rest

"""``--visualize`` output: overlay strips, a short MP4 per sequence, and an ``index.html``.

Each strip is ``[frame | ground truth overlay | prediction overlay]`` side by side (the ground
truth panel is the bare frame when a frame has no annotation). Strips are written as PNGs every
``strip_every`` frames, and every frame goes to ``<seq>.mp4`` as it is produced (streamed; nothing
is kept in memory).
"""

from __future__ import annotations

import html
import io
from pathlib import Path

import numpy as np
from PIL import Image

from videorep.eval.core import atomic_write_bytes, palette_rgb


def overlay(rgb: np.ndarray, index_map: np.ndarray | None, alpha: float = 0.5) -> np.ndarray:
    """Blend the palette colours of ``index_map [H, W]`` over ``rgb [H, W, 3]`` (background kept)."""
    if index_map is None:
        return rgb
    colours = palette_rgb(index_map).astype(np.float32)
    fg = (index_map > 0) & (index_map != 255)
    out = rgb.astype(np.float32)
    out[fg] = (1 - alpha) * out[fg] + alpha * colours[fg]
    return out.clip(0, 255).astype(np.uint8)


class SequenceVisualizer:
    """Streams strips of one sequence to PNGs and an MP4 under ``out_dir/vis``."""

    def __init__(
        self, out_dir: Path, name: str, strip_every: int = 10, height: int = 240, fps: int = 8
    ) -> None:
        self.dir = Path(out_dir) / "vis" / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.strip_every = max(1, strip_every)
        self.height = height
        self.fps = fps
        self.strips: list[str] = []
        self.video: str | None = None
        self._container = None
        self._stream = None

    def add(self, t: int, rgb: np.ndarray, gt: np.ndarray | None, pred: np.ndarray) -> None:
        """Add frame ``t``: ``rgb [H, W, 3]``, ``gt``/``pred`` ``[H, W]`` index maps."""
        panels = [rgb, overlay(rgb, gt), overlay(rgb, pred)]
        strip = np.concatenate(panels, axis=1)
        h, w = strip.shape[:2]
        new_w = max(2, int(round(w * self.height / h)) // 2 * 2)
        small = np.asarray(Image.fromarray(strip).resize((new_w, self.height), Image.BILINEAR))
        if t % self.strip_every == 0:
            path = self.dir / f"strip_{t:05d}.png"
            buf = io.BytesIO()
            Image.fromarray(small).save(buf, format="PNG")
            atomic_write_bytes(path, buf.getvalue())
            self.strips.append(str(path.relative_to(self.dir.parent.parent)))
        self._encode(small)

    def _encode(self, frame: np.ndarray) -> None:
        import av

        if self._container is None:
            path = self.dir / f"{self.name}.mp4"
            self._container = av.open(str(path), mode="w")
            try:
                self._stream = self._container.add_stream("libx264", rate=self.fps)
            except Exception:  # codec missing from this PyAV build
                self._stream = self._container.add_stream("mpeg4", rate=self.fps)
            self._stream.width = frame.shape[1]
            self._stream.height = frame.shape[0]
            self._stream.pix_fmt = "yuv420p"
            self.video = str(path.relative_to(self.dir.parent.parent))
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self._stream.encode(vf):
            self._container.mux(packet)

    def close(self) -> dict:
        """Flush the MP4; returns ``{"strips": [...], "video": path}`` relative to the output dir."""
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
        return {"strips": self.strips, "video": self.video}


def write_index_html(out_dir: Path, title: str, columns: list[str], rows: list[dict]) -> Path:
    """Write ``out_dir/index.html``: the per-sequence table, then each sequence's video and strips.

    ``rows`` hold ``sequence``, the ``columns`` values and optionally ``vis`` (from ``close()``).
    """
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
        "img,video{max-width:100%;display:block;margin:4px 0}</style></head><body>",
        f"<h1>{esc(title)}</h1><table><tr><th>sequence</th>",
    ]
    parts += [f"<th>{esc(c)}</th>" for c in columns] + ["</tr>"]
    for row in rows:
        cells = "".join(f"<td>{_fmt(row.get(c))}</td>" for c in columns)
        parts.append(
            f"<tr><td style='text-align:left'>{esc(str(row['sequence']))}</td>{cells}</tr>"
        )
    parts.append("</table>")
    for row in rows:
        vis = row.get("vis") or {}
        if not vis:
            continue
        parts.append(f"<h2>{esc(str(row['sequence']))}</h2>")
        if vis.get("video"):
            parts.append(f"<video controls loop muted src='{esc(vis['video'])}'></video>")
        parts += [f"<img src='{esc(s)}' alt='{esc(s)}'>" for s in vis.get("strips", [])]
    parts.append("<p>Panels: frame | ground truth | prediction.</p></body></html>")
    path = Path(out_dir) / "index.html"
    atomic_write_bytes(path, "\n".join(parts).encode())
    return path


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) <= 1.5 else f"{value:.1f}"
    return html.escape("" if value is None else str(value))

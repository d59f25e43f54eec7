"""DAVIS-2016/2017 semi-supervised video object segmentation by label propagation.

For each sequence: the first frame's annotation becomes soft labels at feature resolution (one
channel per object plus background), is propagated through the sequence, and each prediction is
upsampled bilinearly to the frame's size, arg-maxed and written as an indexed PNG with the DAVIS
palette to ``OUT/<seq>/NNNNN.png`` (frame 0 gets its ground truth, as the toolkit expects). The
PNGs are then scored exactly as the official davis2017-evaluation does (see
:mod:`videorep.eval.metrics`): per object, J and F over all frames but the first and the last.
Besides ``results.json`` the run writes the toolkit's own ``global_results-<split>.csv`` and
``per-sequence_results-<split>.csv`` (:func:`official_csvs`), so scripts that read those work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from videorep.data.davis import DavisSequence, list_sequences, load_sequence, read_annotation
from videorep.errors import VideorepError
from videorep.eval.core import propagate_masks, write_indexed_png
from videorep.eval.metrics import davis_summary, frame_scores, summarize_objects
from videorep.eval.propagation import PropagationConfig
from videorep.eval.runner import Benchmark, Item, run_benchmark, split_names

if TYPE_CHECKING:
    from videorep.utils.distributed import DistContext


def read_prediction(path: Path) -> np.ndarray:
    """An indexed prediction PNG as ``[H, W]`` uint8 object indices."""
    from PIL import Image

    if not path.is_file():
        raise VideorepError(f"{path}: prediction PNG not found")
    with Image.open(path) as im:
        if im.mode not in ("P", "L"):
            raise VideorepError(f"{path}: prediction must be an indexed (P) or grayscale PNG")
        return np.asarray(im, dtype=np.uint8)


VOID_MODES = ("background", "exclude")


def score_sequence(seq: DavisSequence, pred_dir: Path, void: str = "background") -> dict:
    """Official-formula scores of the PNGs in ``pred_dir`` against ``seq``'s annotations.

    ``void``: how annotation pixels of value 255 are scored. ``"background"`` (default) is what
    the official davis2017-evaluation semi-supervised scorer does: it reads 255 as no object and
    passes no void mask to J and F (its ``masks == 255`` test runs on per-object boolean masks),
    so a prediction covering void pixels counts as a false positive. ``"exclude"`` leaves void
    pixels out of J and F (the usual meaning of void; not comparable with published numbers).

    Returns ``{"sequence", "n_frames", "objects": [per-object J/F mean, recall, decay],
    "J_frames", "F_frames"}`` (per-frame lists are ``[n_objects][n_frames - 2]``).
    """
    if void not in VOID_MODES:
        raise VideorepError(f"void mode must be one of {VOID_MODES}, got {void!r}")
    if not seq.scored:
        return {"sequence": seq.name, "n_frames": len(seq.frames), "objects": [], "scored": False}
    n = seq.n_objects
    j_frames: list[list[float]] = [[] for _ in range(n)]
    f_frames: list[list[float]] = [[] for _ in range(n)]
    for ann in seq.annotations[1:-1]:  # first and last frames are not scored
        gt, void_mask = read_annotation(ann, seq.year)
        gt = np.where(gt > n, 0, gt)  # the toolkit only scores objects 1..n (checked on load)
        pred_path = pred_dir / ann.name
        pred = read_prediction(pred_path)
        if pred.shape != gt.shape:
            raise VideorepError(
                f"{pred_path}: size {pred.shape[1]}x{pred.shape[0]} differs from "
                f"the annotation's {gt.shape[1]}x{gt.shape[0]}"
            )
        if int(pred.max()) > n:
            raise VideorepError(
                f"{pred_path}: object index {int(pred.max())} but the sequence has {n} objects"
            )
        excluded = void_mask if void == "exclude" and void_mask.any() else None
        js, fs = frame_scores(gt, pred, n, excluded)
        for i in range(n):
            j_frames[i].append(js[i])
            f_frames[i].append(fs[i])
    stats = summarize_objects(np.asarray(j_frames), np.asarray(f_frames))
    return {
        "sequence": seq.name,
        "n_frames": len(seq.frames),
        "scored": True,
        "objects": stats["objects"],
        "J_frames": j_frames,
        "F_frames": f_frames,
    }


def evaluate_sequence(
    seq: DavisSequence,
    extract: Callable[[np.ndarray], torch.Tensor],
    grid: tuple[int, int],
    config: PropagationConfig,
    out: Path,
    visualizer_factory: Callable[[str], object] | None = None,
    void: str = "background",
) -> dict:
    """Propagate, write the PNGs of one sequence to ``out/<seq>/`` and score them.

    A pure function of the sequence (plus the model and settings): sharded runs can call it on
    any subset of sequences and merge the returned dicts with :func:`summarize`.
    """
    seq_dir = Path(out) / seq.name
    labels0, void0 = read_annotation(seq.annotations[0], seq.year)
    write_indexed_png(seq_dir / f"{0:05d}.png", labels0)
    vis = visualizer_factory(seq.name) if visualizer_factory else None
    current: dict = {}

    def on_frame(t: int, rgb: np.ndarray) -> None:
        current["rgb"] = rgb
        if vis is not None and t == 0:
            vis.add(0, rgb, labels0, labels0)

    start = time.perf_counter()
    n_classes = seq.n_objects + 1
    input_size = getattr(extract, "input_size", None)  # the encoder's input (label modes)
    preds = propagate_masks(
        seq.frames,
        labels0,
        n_classes,
        extract,
        grid,
        config,
        seq.size,
        void0,
        on_frame,
        input_size=None if input_size is None else tuple(input_size),
    )
    for t, pred in preds:
        write_indexed_png(seq_dir / f"{t:05d}.png", pred)
        if vis is not None:
            gt = read_annotation(seq.annotations[t], seq.year)[0] if seq.scored else None
            vis.add(t, current["rgb"], gt, pred)
    elapsed = time.perf_counter() - start
    result = score_sequence(seq, seq_dir, void)
    result["seconds"] = elapsed
    if vis is not None:
        result["vis"] = vis.close()
    return result


def sequence_row(result: dict) -> dict:
    """Per-sequence means over its objects (J, F, J&F), for tables."""
    objs = result.get("objects") or []
    row = {"sequence": result["sequence"], "objects": len(objs), "frames": result["n_frames"]}
    if objs:
        row["J"] = float(np.mean([o["J_mean"] for o in objs]))
        row["F"] = float(np.mean([o["F_mean"] for o in objs]))
        row["J&F"] = (row["J"] + row["F"]) / 2
    if "vis" in result:
        row["vis"] = result["vis"]
    return row


def summarize(results: Sequence[dict]) -> dict:
    """Dataset statistics over all objects of all sequences (official averaging)."""
    per_object = [o for r in results for o in r.get("objects", [])]
    return davis_summary(per_object)


#: columns of the official toolkit's ``global_results-<set>.csv`` (``evaluation_method.py``)
GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
#: columns of its ``per-sequence_results-<set>.csv``
SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")


def _csv_float(value: float) -> str:
    """A float as pandas' ``to_csv(float_format="%.3f")`` writes it (NaN: empty field)."""
    return "" if value != value else f"{value:.3f}"  # same digits as "%.3f" % value


def official_csvs(results: Sequence[dict], summary: dict) -> tuple[str, str]:
    """The text of the toolkit's global and per-sequence CSVs for these per-sequence results.

    As davis2017-evaluation's ``evaluation_method.py`` writes them: one header line and one row
    of means over all objects (``J&F-Mean`` = (J-Mean + F-Mean) / 2), and one row per object
    named ``<sequence>_<object id>`` in evaluation order, values formatted ``%.3f``, no index
    column, ``\n`` line ends. Unscored sequences (first-frame annotation only) are left out.
    """
    keys = ("JF_mean", "J_mean", "J_recall", "J_decay", "F_mean", "F_recall", "F_decay")
    global_csv = ",".join(GLOBAL_COLUMNS) + "\n"
    global_csv += ",".join(_csv_float(summary[k]) for k in keys) + "\n"
    per_seq = ",".join(SEQUENCE_COLUMNS) + "\n"
    for r in results:
        for i, obj in enumerate(r.get("objects") or []):
            name = f"{r['sequence']}_{i + 1}"
            per_seq += f"{name},{_csv_float(obj['J_mean'])},{_csv_float(obj['F_mean'])}\n"
    return global_csv, per_seq


@dataclass
class DavisBenchmark(Benchmark):
    """DAVIS-2016/2017 ``split`` of ``root``: one item per sequence, J&F per object."""

    name = "davis"
    help = "DAVIS-2016/2017 video object segmentation (J&F)"
    default_size = "480x880"
    header = f"{'sequence':<24} {'obj':>3} {'frames':>6} {'J':>6} {'F':>6} {'J&F':>6} {'s':>6}"
    index_columns = ("objects", "frames", "J", "F", "J&F")

    root: str | Path
    year: int
    split: str
    extractor: Any
    config: PropagationConfig
    sequences: list[str] | None = None
    max_frames: int | None = None
    void: str = "background"

    @classmethod
    def add_arguments(cls, p) -> None:  # noqa: ANN001
        p.add_argument("--year", type=int, default=2017, choices=[2016, 2017])
        p.add_argument("--split", default="val")
        p.add_argument("--sequences", default=None, help="comma-separated subset of the split")
        p.add_argument(
            "--max-frames", type=int, default=None, help="truncate sequences (quick checks)"
        )
        p.add_argument(
            "--void",
            default="background",
            choices=list(VOID_MODES),
            help="annotation pixels of value 255: scored as background, as the official "
            "davis2017-evaluation semi-supervised scorer does (default), or left out of J and F",
        )

    @classmethod
    def from_args(cls, args, extractor, config: PropagationConfig) -> DavisBenchmark:  # noqa: ANN001
        return cls(
            args.root,
            args.year,
            args.split,
            extractor,
            config,
            sequences=split_names(args.sequences),
            max_frames=args.max_frames,
            void=args.void,
        )

    def items(self) -> list[Item]:
        names = list_sequences(self.root, self.year, self.split, self.sequences)
        seqs = [load_sequence(self.root, n, self.year) for n in names]  # validate everything first
        if self.max_frames:
            for s in seqs:
                s.frames = s.frames[: self.max_frames]
                if len(s.annotations) > 1:
                    s.annotations = s.annotations[: self.max_frames]
        return [Item(s.name, len(s.frames), s) for s in seqs]

    def evaluate(self, item: Item, out: Path, visualizer) -> dict:  # noqa: ANN001
        ex = self.extractor
        return evaluate_sequence(item.data, ex, ex.grid, self.config, out, visualizer, self.void)

    def outputs(self, item: Item) -> list[str]:
        return [f"{item.name}/{t:05d}.png" for t in range(len(item.data.frames))]

    def row(self, result: dict) -> str:
        row = sequence_row(result)
        secs = f"{result['seconds']:6.1f}" if result.get("seconds") is not None else f"{'':>6}"
        if "J" not in row:
            return (
                f"{result['sequence']:<24} {'-':>3} {row['frames']:>6}  "
                f"(first-frame annotation only: not scored)"
            )
        return (
            f"{result['sequence']:<24} {row['objects']:>3} {row['frames']:>6} "
            f"{100 * row['J']:6.1f} {100 * row['F']:6.1f} {100 * row['J&F']:6.1f} {secs}"
        )

    summarize = staticmethod(summarize)  # the module's function: results -> dataset metrics

    def summary_row(self, summary: dict) -> str:
        return (
            f"{'mean over objects':<24} {'':>3} {'':>6} {100 * summary['J_mean']:6.1f} "
            f"{100 * summary['F_mean']:6.1f} {100 * summary['JF_mean']:6.1f}"
        )

    def per_sequence(self, result: dict) -> dict:
        return super().per_sequence(result) | {"summary": _strip(sequence_row(result))}

    def write_reports(self, out: Path, results: Sequence[dict], summary: dict) -> list[str]:
        """The official toolkit's ``global_results-<split>.csv`` and per-sequence CSV."""
        from videorep.eval.core import atomic_write_bytes

        if not summary:
            return []
        texts = official_csvs(results, summary)
        names = [f"global_results-{self.split}.csv", f"per-sequence_results-{self.split}.csv"]
        for name, text in zip(names, texts):
            atomic_write_bytes(Path(out) / name, text.encode(), fsync=True)
        return names

    def settings(self, names: list[str]) -> dict:
        return {
            "year": self.year,
            "split": self.split,
            "void": self.void,
            "sequences": names,
        } | self.model_settings()

    def title(self) -> str:
        return f"DAVIS-{self.year} {self.split}"

    def index_row(self, result: dict) -> dict:
        return sequence_row(result)


BENCHMARK = DavisBenchmark


def run_davis(
    root: str | Path,
    year: int,
    split: str,
    extractor,
    config: PropagationConfig,
    out: str | Path,
    sequences: list[str] | None = None,
    visualize: bool = False,
    settings: dict | None = None,
    max_frames: int | None = None,
    log: Callable[[str], None] = print,
    dist: DistContext | None = None,
    void: str = "background",
    resume: bool = False,
    tensorboard: str | Path | bool | None = None,
) -> dict:
    """Evaluate ``extractor`` on a DAVIS split; writes PNGs, ``results.json`` (and visuals).

    :class:`DavisBenchmark` through :func:`~videorep.eval.runner.run_benchmark`: sequences are
    split across the ranks of ``dist`` (default: the initialised ``torch.distributed`` group,
    else a single process), each rank writes its sequences' PNGs, rank 0 merges the
    per-sequence results in split order, prints the table and writes ``results.json``.

    Returns the ``results.json`` content (on every rank): ``J_mean``, ``F_mean``, ``JF_mean``,
    recalls, decays, ``per_sequence`` (with per-object values), ``settings``, ``timing``
    (wall-clock seconds and rank per sequence) and ``provenance``. Also writes the official
    toolkit's CSVs (:func:`official_csvs`) and ``command.txt``; ``tensorboard`` as in
    :func:`~videorep.eval.runner.run_benchmark`.
    """
    bench = DavisBenchmark(root, year, split, extractor, config, sequences, max_frames, void)
    return run_benchmark(
        bench,
        out,
        settings=settings,
        visualize=visualize,
        resume=resume,
        log=log,
        dist=dist,
        tensorboard=tensorboard,
    )


def _strip(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "vis"}

"""Propagation presets: the settings of each reference protocol, for the one engine.

:class:`PropagationConfig` holds every knob of :class:`videorep.eval.propagation.LabelPropagator`
and of the label conversions (:mod:`videorep.eval.labels`); a preset is a configuration per task
(``davis``, ``vip``, ``jhmdb``) plus the input size its reference runs at. Each preset function's
docstring names the files and functions it reproduces. Torch-free, so the CLI can list presets
without importing torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from videorep.errors import VideorepError

WINDOWS = ("square", "disk")
LABEL_DOWN = ("area", "nearest", "bilinear")
LABEL_UP = ("frame", "input", "input-normmask")


@dataclass(frozen=True)
class PropagationConfig:
    """Hyper-parameters of label propagation (the engine is the same for every preset).

    Attributes:
        topk: number of source patches kept per target patch (over all context frames).
        queue: number of most recent predicted frames kept as context (frame 0 is always kept too).
        radius: neighbourhood radius in patches; ``<= 0`` means unrestricted.
        temperature: softmax temperature applied to the cosine affinities of the kept sources.
        window: ``"square"`` (Chebyshev ``<= radius``) or ``"disk"`` (Euclidean ``< radius``).
        window_first: the neighbourhood restricts frame 0 too (DINO); ``False``: frame 0 is
            searched over the whole frame and only the queue is restricted (CRW, CropMAE).
        pad_queue: start with the queue full of copies of frame 0 (features and labels), so every
            frame sees ``1 + queue`` context frames (CRW / CropMAE ``make_paths``); ``False``: the
            queue fills up as frames are predicted (DINO).
        label_down: first-frame index map -> soft labels at the feature grid: ``"area"`` (area
            average of the one-hot map at the frame's size), ``"nearest"`` (the index map resized
            to the grid with PIL's nearest filter, then one-hot: DINO ``read_seg``), ``"bilinear"``
            (index map resized to the encoder input size with the floor-rule nearest of
            ``cv2.INTER_NEAREST``, one-hot, bilinear down to the grid: CRW / CropMAE ``vos.py``).
        label_up: soft labels -> index map at the frame's size: ``"frame"`` (bilinear up to the
            frame size, argmax), ``"input"`` (bilinear up to the encoder input size, argmax,
            floor-rule nearest to the frame size: CRW / CropMAE ``dump_predictions`` and
            ``convert_davis``), ``"input-normmask"`` (bilinear up to the input size, per-channel
            min-max ``norm_mask``, argmax, PIL nearest to the frame size: DINO).
    """

    topk: int = 7
    queue: int = 20
    radius: int = 20
    temperature: float = 0.1
    window: str = "square"
    window_first: bool = True
    pad_queue: bool = False
    label_down: str = "area"
    label_up: str = "frame"

    def __post_init__(self) -> None:
        if self.topk < 1:
            raise VideorepError(f"topk {self.topk}: must be at least 1")
        if self.queue < 0:
            raise VideorepError(f"queue {self.queue}: must be >= 0")
        if not self.temperature > 0:
            raise VideorepError(f"temperature {self.temperature}: must be > 0")
        if self.window not in WINDOWS:
            raise VideorepError(f"window {self.window!r}: expected one of {', '.join(WINDOWS)}")
        if self.label_down not in LABEL_DOWN:
            raise VideorepError(
                f"label_down {self.label_down!r}: expected one of {', '.join(LABEL_DOWN)}"
            )
        if self.label_up not in LABEL_UP:
            raise VideorepError(
                f"label_up {self.label_up!r}: expected one of {', '.join(LABEL_UP)}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def _cropmae(task: str) -> PropagationConfig:
    """CropMAE ``downstreams/propagation`` (``start.py`` settings; ``src/test.py`` ``test``,
    ``src/utils/test_utils.py`` ``context_index_bank`` / ``mem_efficient_batched_affinity`` /
    ``dump_predictions``, ``src/utils/__init__.py`` ``MaskedAttention``, ``src/data/vos.py``
    ``make_paths`` / ``VOSDataset.__getitem__``, ``src/eval/convert_davis.py`` ``convert_dir``).

    Context = frame 0 (whole frame) + the 20 preceding frames, padded at the start with copies of
    frame 0; a disk ``distance < 20`` patches restricts the 20 recent frames only; softmax at
    temperature 0.7 over the top-k (7 DAVIS / JHMDB, 10 VIP); frames at 480x880 (JHMDB 320x320);
    labels: nearest to the input size, one-hot, bilinear down to the grid; predictions: bilinear
    up to the input size, argmax, nearest to the frame size. Co-Settle's Tab. 3c numbers (top-k,
    queue 20, radius 20, sizes) are exactly these: the default preset.
    """
    return PropagationConfig(
        topk=10 if task == "vip" else 7,
        queue=20,
        radius=20,
        temperature=0.7,
        window="disk",
        window_first=False,
        pad_queue=True,
        label_down="bilinear",
        label_up="input",
    )


def _dino(task: str) -> PropagationConfig:
    """DINO ``eval_video_segmentation.py`` (``eval_video_tracking_davis``, ``label_propagation``,
    ``restrict_neighborhood``, ``norm_mask``, ``read_seg``, ``read_frame``; argparse defaults).

    Context = frame 0 + the last 7 predicted frames (no padding); a square neighbourhood
    ``|dy|, |dx| <= 12`` on every context frame, frame 0 included; top-k 5 weighted by
    ``exp(aff / 0.1)`` renormalised (a softmax over the top-k); frames at 480 short side, long
    side floored to a multiple of 64 (480x832 for DAVIS 480p); first-frame labels: PIL nearest of
    the index map to the grid, one-hot; predictions: bilinear x patch size, ``norm_mask``,
    argmax, PIL nearest to the frame size. (DINO keeps every source tied with the k-th affinity;
    the engine keeps exactly k by its selection rule.)
    """
    return PropagationConfig(
        topk=5,
        queue=7,
        radius=12,
        temperature=0.1,
        window="square",
        window_first=True,
        pad_queue=False,
        label_down="nearest",
        label_up="input-normmask",
    )


def _crw(task: str) -> PropagationConfig:
    """CRW (videowalk) ``code/test.py`` with the README's DAVIS command (``--topk 10 --videoLen 20
    --radius 12 --temperature 0.05 --cropSize -1``): the same algorithm as :func:`_cropmae`
    (``test``, ``utils/test_utils.py``, ``data/vos.py``; CropMAE copied it) with those numbers,
    at the frames' own size (``--cropSize -1``: 480x854 for DAVIS 480p).
    """
    return PropagationConfig(
        topk=10,
        queue=20,
        radius=12,
        temperature=0.05,
        window="disk",
        window_first=False,
        pad_queue=True,
        label_down="bilinear",
        label_up="input",
    )


def _dino_paper_params(task: str) -> PropagationConfig:
    """videorep's earlier ``paper`` preset, kept for comparison with the tables measured with it:
    Co-Settle's Tab. 3c numbers (queue 20, radius 20, top-k 7 / 10 VIP) with DINO-style choices
    for the rest (temperature 0.1, square window on every context frame including frame 0, no
    queue padding) and videorep's own label handling (area-averaged first-frame labels,
    predictions bilinear to the frame size). Reproduces no published script.
    """
    return PropagationConfig(topk=10 if task == "vip" else 7, queue=20, radius=20, temperature=0.1)


TASKS = ("davis", "vip", "jhmdb")
_PRESET_FUNCS = {
    "cropmae": _cropmae,
    "dino": _dino,
    "crw": _crw,
    "dino-paper-params": _dino_paper_params,
}
DEFAULT_PRESET = "cropmae"
PRESETS: dict[str, dict[str, PropagationConfig]] = {
    name: {task: fn(task) for task in TASKS} for name, fn in _PRESET_FUNCS.items()
}
#: the input size (``HxW`` before snapping to the patch grid) each reference runs each task at;
#: ``None``: the benchmark's default size
PRESET_SIZES: dict[str, dict[str, str | None]] = {
    "cropmae": {"davis": "480x880", "vip": None, "jhmdb": "320x320"},
    "dino": {"davis": "480x832", "vip": None, "jhmdb": None},
    "crw": {"davis": "480x854", "vip": None, "jhmdb": None},
    "dino-paper-params": {"davis": "480x880", "vip": None, "jhmdb": "320x320"},
}


#: one line per preset: what it reproduces (the functions' docstrings give files and functions)
PRESET_SOURCES: dict[str, str] = {
    "cropmae": "CropMAE downstreams/propagation (src/test.py, start.py): T 0.7, disk 20 on the "
    "queue only, queue padded with frame 0, bilinear labels, 480x880; the protocol Co-Settle's "
    "numbers most likely used (default)",
    "dino": "DINO eval_video_segmentation.py: queue 7, square 12, top-k 5, T 0.1, nearest "
    "labels, norm_mask, 480x832",
    "crw": "CRW (videowalk) code/test.py with its README's DAVIS flags: top-k 10, queue 20, "
    "disk 12, T 0.05, full-size frames",
    "dino-paper-params": "videorep's former 'paper' preset: Co-Settle's top-k 7 / queue 20 / "
    "radius 20 with T 0.1, square window on every frame, area labels (no published script)",
}


def preset_source(name: str) -> str:
    """One line: what preset ``name`` reproduces (see :data:`PRESET_SOURCES`)."""
    return PRESET_SOURCES[name]


def preset_size(preset: str, task: str) -> str | None:
    """The reference's input size ``HxW`` for ``task`` (``None``: the benchmark's default)."""
    return PRESET_SIZES.get(preset, {}).get(task)


def resolve_config(
    preset: str = DEFAULT_PRESET, task: str = "davis", **overrides
) -> PropagationConfig:
    """The preset's configuration for ``task`` with any non-``None`` ``overrides`` applied."""
    if preset == "paper":
        raise VideorepError(
            "preset 'paper' was renamed 'dino-paper-params' (the paper's top-k / queue / radius "
            "with DINO-style choices for the rest); the default is now 'cropmae', the protocol "
            "the paper's numbers most likely came from (docs/evaluation.md)"
        )
    if preset not in PRESETS:
        raise VideorepError(f"preset {preset!r}: expected one of {', '.join(PRESETS)}")
    if task not in PRESETS[preset]:
        raise VideorepError(f"task {task!r}: expected one of {', '.join(PRESETS[preset])}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return replace(PRESETS[preset][task], **changes)

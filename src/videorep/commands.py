"""``videorep propagate`` and ``videorep features``: the Python API on any video or frame folder.

* ``propagate --video clip.mp4|frames/ --mask first.png --out DIR``: the first frame's index PNG
  propagated through the video with the engine and presets of ``eval davis``
  (:func:`videorep.eval.core.propagate_masks`): ``DIR/NNNNN.png`` palette PNGs (one per frame
  from ``--start-frame`` on, named by frame number), ``DIR/vis/<name>/<name>.mp4`` overlay video
  and strips, ``DIR/index.html``.
* ``features --input PATH [PATH ...] --out DIR|FILE.safetensors``: patch tokens ``[T, h, w, D]``
  of each video/frame folder/image in one ``.safetensors`` with its metadata (grid, frame indices,
  timestamps, sizes, backbone, projection, layer); ``--layer N`` for block ``N``'s raw output,
  ``--cls`` adds the CLS tokens ``[T, D]``. ``--image IMG --out f.npy`` keeps the one-image
  ``.npy`` form (``[h*w, D]``, prints ``h w D``).

Handlers import torch lazily; bad input raises :class:`~videorep.errors.VideorepError`, which the
CLI prints as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from videorep.backbones.registry import DEFAULT_BACKBONE
from videorep.errors import VideorepError
from videorep.eval.presets import DEFAULT_PRESET, PRESETS

FEATURES_FORMAT = "videorep-features-v1"
PROPAGATE_SIZE = "480x880"  # eval davis's default


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``propagate`` and ``features`` to the ``videorep`` parser."""
    p = subparsers.add_parser(
        "propagate",
        help="propagate a first-frame mask through a video or frame folder",
        description="Propagate a first-frame index PNG (palette or grayscale 0..K) through a "
        "video file or frame folder with the engine and presets of `eval davis`; writes "
        "palette PNGs per frame, an overlay MP4 and index.html into --out.",
    )
    p.add_argument("--video", required=True, help="video file or folder of frame images")
    p.add_argument("--mask", required=True, help="index PNG of the first (or --start-frame) frame")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--start-frame", type=int, default=0, help="frame the mask belongs to")
    p.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        choices=list(PRESETS),
        help="propagation protocol (see `videorep eval davis --help`)",
    )
    p.add_argument("--topk", type=int, default=None)
    p.add_argument("--queue", type=int, default=None)
    p.add_argument("--radius", type=int, default=None)
    p.add_argument("--temperature", type=float, default=None)
    _model_args(p, PROPAGATE_SIZE)
    p.set_defaults(func=cmd_propagate)

    p = subparsers.add_parser(
        "features",
        help="patch features of videos, frame folders or images (.safetensors)",
        description="Encode each --input (video file, frame folder or image) with a frozen "
        "encoder and write tokens [T, h, w, D] and metadata to one .safetensors per input; "
        "--image IMG writes one image's [h*w, D] tokens as .npy and prints 'h w D'.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="one image file -> .npy [h*w, D] (prints 'h w D')")
    src.add_argument("--input", nargs="+", help="video files, frame folders or images")
    p.add_argument(
        "--out", required=True, help="output folder, or a .safetensors file for one --input"
    )
    p.add_argument("--layer", type=int, default=None, help="0-based block (raw output, no norm)")
    p.add_argument("--cls", action="store_true", help="also store the CLS tokens [T, D]")
    p.add_argument("--batch", type=int, default=8, help="frames per encoder call")
    _model_args(p, None)
    p.set_defaults(func=cmd_features)


def _model_args(p: argparse.ArgumentParser, size: str | None) -> None:
    from videorep.utils.device import add_device_argument
    from videorep.utils.encoder_dtype import add_encoder_dtype_argument

    p.add_argument(
        "--backbone", default=DEFAULT_BACKBONE, help=f"registered name (default {DEFAULT_BACKBONE})"
    )
    p.add_argument("--checkpoint", default=None, help="encoder checkpoint (default: its own)")
    p.add_argument("--projection", default=None, metavar="DIR", help="trained projection head")
    p.add_argument(
        "--size",
        default=size,
        help="input HxW, each side snapped to the nearest patch multiple "
        + (f"(default {size})" if size else "(default: the frame size snapped)"),
    )
    p.add_argument("--fps", type=float, default=None, help="video sampling rate (default: native)")
    add_device_argument(p)
    add_encoder_dtype_argument(p)


def _model(args: argparse.Namespace):  # noqa: ANN202
    from videorep.api import load_encoder, load_projection
    from videorep.utils.device import resolve_device

    device = resolve_device(args.device)
    encoder = load_encoder(args.backbone, args.checkpoint, device, args.encoder_dtype)
    projection = None
    if args.projection:
        projection = load_projection(args.projection, device, expect_dim=encoder.embed_dim)
    return encoder, projection


def cmd_propagate(args: argparse.Namespace) -> int:
    """Write the propagated masks, the overlay MP4 and index.html of one video."""
    from videorep.api import _first_labels, _frame_size, _open_frames, _propagation
    from videorep.data.images import parse_size
    from videorep.eval.core import FeatureExtractor, write_indexed_png
    from videorep.eval.propagation import resolve_config
    from videorep.eval.visualize import SequenceVisualizer, write_index_html

    size = parse_size(args.size)
    config = resolve_config(
        args.preset,
        "davis",
        topk=args.topk,
        queue=args.queue,
        radius=args.radius,
        temperature=args.temperature,
    )
    frames = _open_frames(args.video, args.fps)
    start = args.start_frame
    if not 0 <= start < frames.count:
        raise VideorepError(
            f"{args.video}: --start-frame {start} out of range (0..{frames.count - 1})"
        )
    frame_size = _frame_size(frames) if start == 0 else tuple(frames.read([start])[0].shape[:2])
    labels0, void0, _ = _first_labels(args.mask, frame_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    encoder, projection = _model(args)
    ex = FeatureExtractor(encoder, size, projection)
    name = Path(args.video).stem or "video"
    vis = SequenceVisualizer(out, name)
    current: dict = {}

    def on_frame(t: int, rgb) -> None:  # noqa: ANN001
        current["rgb"] = rgb
        if t == 0:
            vis.add(start, rgb, labels0, labels0)

    write_indexed_png(out / f"{start:05d}.png", labels0)
    count = 1
    preds = _propagation(
        frames,
        labels0,
        void0,
        ex,
        ex.grid,
        config,
        start,
        on_frame,
        input_size=tuple(ex.input_size),
    )
    for t, pred in preds:
        write_indexed_png(out / f"{t:05d}.png", pred)
        vis.add(t, current["rgb"], None, pred)
        count += 1
    row = {"sequence": name, "frames": count, "objects": int(labels0.max()), "vis": vis.close()}
    write_index_html(out, f"videorep propagate: {args.video}", ["frames", "objects"], [row])
    print(f"{count} masks ({int(labels0.max())} objects) -> {out}")
    sys.stdout.flush()
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    """Write features per input (.safetensors), or one image's tokens (.npy) with ``--image``."""
    from videorep.data.images import parse_size

    size = parse_size(args.size) if args.size else None
    out = Path(args.out)
    if args.image is not None:
        return _image_features(args, size, out)
    from videorep.api import _open_frames

    single = out.suffix == ".safetensors"
    if single and len(args.input) > 1:
        raise VideorepError(
            f"{out}: one output file for {len(args.input)} inputs; give an output folder"
        )
    if single and not out.parent.is_dir():
        raise VideorepError(f"{out}: output directory {out.parent} does not exist")
    if args.batch < 1:
        raise VideorepError(f"--batch {args.batch}: must be at least 1")
    for path in args.input:  # every input is checked before any encoding
        _open_frames(path, args.fps)
    encoder, projection = _model(args)
    if args.layer is not None and not 0 <= args.layer < encoder.depth:
        raise VideorepError(
            f"--layer {args.layer}: {args.backbone} has blocks 0..{encoder.depth - 1}"
        )
    targets = [out] if single else _output_names(out, args.input)
    for path, target in zip(args.input, targets):
        feats = _features(args, encoder, projection, path, size)
        write_features(target, feats, _metadata(args, path))
        t, h, w, d = feats.tokens.shape
        print(f"{path} -> {target}: {t} {h} {w} {d}")
        sys.stdout.flush()
    return 0


def _features(args, encoder, projection, path, size):  # noqa: ANN001, ANN202
    from videorep.api import extract_features

    return extract_features(
        encoder,
        path,
        size,
        projection,
        args.batch,
        layer=args.layer,
        cls=args.cls,
        fps=args.fps,
        device="cpu",
    )


def _output_names(out: Path, inputs: list[str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    names: list[Path] = []
    for path in inputs:
        stem = Path(path).stem or Path(path).name or "input"
        target, k = out / f"{stem}.safetensors", 1
        while target in names:
            target, k = out / f"{stem}-{k}.safetensors", k + 1
        names.append(target)
    return names


def _metadata(args: argparse.Namespace, path: str) -> dict:
    return {
        "input": str(path),
        "backbone": args.backbone,
        "checkpoint": args.checkpoint,
        "projection": args.projection,
        "fps": args.fps,
    }


def write_features(path: Path, feats, extra: dict) -> None:  # noqa: ANN001
    """Write :class:`videorep.api.Features` to ``path`` (atomically) as safetensors.

    Tensors: ``tokens [T, h, w, D]`` and, if present, ``cls [T, D]``. Metadata (JSON strings):
    ``format``, ``grid``, ``frame_indices``, ``timestamps``, ``size``, ``frame_size``, ``layer``
    and ``extra``'s entries (input, backbone, checkpoint, projection, fps).
    """
    from safetensors.torch import save

    from videorep.eval.core import atomic_write_bytes

    tensors = {"tokens": feats.tokens.detach().cpu().contiguous()}
    if feats.cls is not None:
        tensors["cls"] = feats.cls.detach().cpu().contiguous()
    meta = {
        "grid": list(feats.grid),
        "frame_indices": feats.frame_indices,
        "timestamps": feats.timestamps,
        "size": list(feats.size),
        "frame_size": list(feats.frame_size),
        "layer": feats.layer,
    } | extra
    metadata = {"format": FEATURES_FORMAT} | {k: json.dumps(v) for k, v in meta.items()}
    atomic_write_bytes(Path(path), save(tensors, metadata=metadata))


def read_features(path: str | Path) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of a file :func:`write_features` wrote (metadata JSON-decoded)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own errors on a damaged file
        raise VideorepError(f"{path}: not a videorep features file ({exc})") from None
    if raw.get("format") != FEATURES_FORMAT:
        raise VideorepError(f"{path}: not a videorep features file")
    meta = {k: (v if k == "format" else json.loads(v)) for k, v in raw.items()}
    return tensors, meta


def _image_features(args: argparse.Namespace, size, out: Path) -> int:  # noqa: ANN001
    import numpy as np

    from videorep.backbones.commands import encode_image

    if not out.parent.is_dir():
        raise VideorepError(f"{out}: output directory {out.parent} does not exist")
    if args.layer is not None or args.cls or args.projection:
        raise VideorepError("--layer, --cls and --projection need --input (a .safetensors file)")
    feats, h, w = encode_image(args.backbone, args.image, size, args.checkpoint)
    try:
        with open(out, "wb") as fh:  # exactly this path (np.save would append .npy)
            np.save(fh, feats)
    except OSError as exc:
        raise VideorepError(f"{out}: cannot write features ({exc.strerror or exc})") from None
    print(f"{h} {w} {feats.shape[1]}")
    sys.stdout.flush()
    return 0

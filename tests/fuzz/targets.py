"""The readers under fuzz: one :class:`~fuzzlib.Target` per (file type, reader).

``CASES[file_type] = (fast, slow)`` is the number of mutated files tried per file type in the
default run and in the ``slow`` run (split evenly over the targets of that type); the table in
``docs/fuzz.md`` is checked against it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from fuzzlib import (
    GENERIC,
    Target,
    jpeg_huge,
    json_huge,
    json_wrong_shape,
    mp4_huge,
    non_utf8,
    npy_huge,
    png_huge,
    safetensors_huge,
    text_junk,
)

from videorep.data.davis import list_sequences, load_sequence, read_annotation
from videorep.data.images import load_image
from videorep.data.jhmdb import load_joints
from videorep.data.jhmdb import load_video as load_jhmdb_video
from videorep.data.pairs import FramePairDataset
from videorep.data.sources import discover_sources
from videorep.data.video import probe_video, read_frames
from videorep.data.vip import load_video as load_vip_video
from videorep.data.vip import read_part_labels

CASES = {
    "mp4": (48, 480),
    "webm": (32, 320),
    "jpg": (48, 480),
    "png": (48, 480),
    "annotation png": (48, 480),
    "safetensors": (40, 400),
    "checkpoint.pt": (40, 400),
    "config.json": (48, 480),
    "view bank": (36, 360),
    "feature cache": (30, 300),
    "split/list .txt": (60, 600),
    "joints .mat": (16, 160),
}

TEXT = ("truncate", "empty", "bitflip", "overwrite", "wrong_type", "non_utf8", "text_junk")


def both(path: Path) -> list[str]:
    return [str(path), str(path.parent)]


# --- validators -----------------------------------------------------------------------------


def rgb_image(value) -> None:  # noqa: ANN001
    assert isinstance(value, np.ndarray) and value.dtype == np.uint8, type(value)
    assert value.ndim == 3 and value.shape[2] == 3 and min(value.shape[:2]) > 0, value.shape


def label_map(value) -> None:  # noqa: ANN001
    arr = value[0] if isinstance(value, tuple) else value
    assert isinstance(arr, np.ndarray) and arr.dtype == np.uint8 and arr.ndim == 2, arr.shape


def video_frames(value) -> None:  # noqa: ANN001
    info, frames = value
    assert info.num_frames >= 1 and len(frames) == info.num_frames
    for f in frames:
        assert f.shape == (info.height, info.width, 3) and f.dtype == np.uint8, f.shape


def pair_items(value) -> None:  # noqa: ANN001
    for item in value:
        assert tuple(item["frames"].shape) == (2, 3, 32, 32), item["frames"].shape
        assert torch.isfinite(item["frames"]).all()


# --- callers --------------------------------------------------------------------------------


def read_video(path: Path):  # noqa: ANN201
    info = probe_video(path)
    return info, read_frames(path, info.times(range(info.num_frames)))


def train_items(folder: Path) -> list[dict]:
    """What training does with a folder: discover, pair, read every item of one epoch."""
    sources = discover_sources([folder])
    ds = FramePairDataset(sources, size=32, seed=0)
    return [ds[i] for i in range(len(ds))]


def video_targets(s: dict) -> list[Target]:
    out = []
    for kind in ("mp4", "webm"):
        extra = {"huge": mp4_huge} if kind == "mp4" else {}

        def prepare_skip(case: Path, kind=kind) -> Path:
            case.mkdir(parents=True)
            shutil.copy(s[kind], case / f"good.{kind}")
            return case / f"bad.{kind}"

        out.append(
            Target(
                kind,
                "data.video.probe_video + read_frames",
                s[kind],
                read_video,
                f"clip.{kind}",
                mutations=GENERIC + tuple(extra),
                extra=extra,
                validate=video_frames,
                # FFmpeg takes the size from the bitstream, not the container's declaration
                detectable=("empty", "wrong_type", "truncate"),
                compatible=("mp4", "webm"),
            )
        )
        out.append(
            Target(
                kind,
                "training: discover_sources + FramePairDataset (warn + skip)",
                s[kind],
                lambda p: train_items(p.parent),
                f"bad.{kind}",
                mutations=GENERIC + tuple(extra),
                extra=extra,
                validate=pair_items,
                detectable=(),
                mode="skip",
                prepare=prepare_skip,
                compatible=("mp4", "webm"),
            )
        )
    return out


def image_targets(s: dict) -> list[Target]:
    out = []
    for kind, huge in (("jpg", jpeg_huge), ("png", png_huge)):

        def prepare_skip(case: Path, kind=kind) -> Path:
            good, bad = case / "good", case / "bad"
            good.mkdir(parents=True)
            bad.mkdir(parents=True)
            for t in range(4):
                shutil.copy(s["frames"] / "video1" / f"{t:05d}.{kind}", good)
            shutil.copy(s["frames"] / "video0" / f"00001.{kind}", bad)
            return bad / f"00000.{kind}"

        out.append(
            Target(
                kind,
                "data.images.load_image",
                s[kind],
                load_image,
                f"frame.{kind}",
                mutations=GENERIC + ("huge",),
                extra={"huge": huge},
                validate=rgb_image,
                detectable=("empty", "wrong_type", "huge"),
                compatible=("jpg", "png"),
            )
        )
        out.append(
            Target(
                kind,
                "training: frame folder via discover_sources + FramePairDataset (warn + skip)",
                s[kind],
                lambda p: train_items(p.parent.parent),
                f"00000.{kind}",
                mutations=GENERIC + ("huge",),
                extra={"huge": huge},
                validate=pair_items,
                detectable=(),
                mode="skip",
                prepare=prepare_skip,
                compatible=("jpg", "png"),
            )
        )
    return out


def annotation_targets(s: dict) -> list[Target]:
    huge = {"huge": png_huge}

    def davis_sequence(case: Path) -> Path:
        shutil.copytree(s["davis"], case / "DAVIS")
        return case / "DAVIS" / "Annotations" / "480p" / "squares" / "00002.png"

    def vip_video(case: Path) -> Path:
        shutil.copytree(s["vip"], case / "VIP")
        return case / "VIP" / "Annotations" / "Category_ids" / "v1" / "001003.png"

    def check_davis(p: Path):  # noqa: ANN202
        root = p.parents[3]
        seq = load_sequence(root, "squares")
        return [read_annotation(a, 2017) for a in seq.annotations]

    def check_vip(p: Path):  # noqa: ANN202
        video = load_vip_video(p.parents[3], "v1")
        return [read_part_labels(a) for a in video.annotations.values()]

    common = dict(mutations=GENERIC + ("huge",), extra=huge, detectable=("empty", "huge"))
    return [
        Target(
            "annotation png",
            "data.davis.read_annotation",
            s["annotation"],
            lambda p: read_annotation(p, 2017),
            "00000.png",
            validate=label_map,
            **common,
        ),
        Target(
            "annotation png",
            "data.vip.read_part_labels",
            s["vip_annotation"],
            read_part_labels,
            "001000.png",
            validate=label_map,
            **common,
        ),
        Target(
            "annotation png",
            "data.davis.load_sequence + read_annotation (all frames)",
            s["annotation"],
            check_davis,
            "00002.png",
            validate=lambda v: [label_map(x) for x in v],
            prepare=davis_sequence,
            **common,
        ),
        Target(
            "annotation png",
            "data.vip.load_video + read_part_labels",
            s["vip_annotation"],
            check_vip,
            "001003.png",
            validate=lambda v: [label_map(x) for x in v],
            prepare=vip_video,
            **common,
        ),
    ]


def weights_targets(s: dict) -> list[Target]:
    from videorep.backbones import load_encoder
    from videorep.methods.cosettle.heads import ProjectionHead, load_projection
    from videorep.train.checkpoint import load_checkpoint

    def projection_dir(case: Path, replace: str) -> Path:
        shutil.copytree(s["projection"], case)
        return case / replace

    def is_head(value) -> None:  # noqa: ANN001
        assert isinstance(value, ProjectionHead) and value.dim == 192

    def is_encoder(value) -> None:  # noqa: ANN001
        assert value.embed_dim == 192

    binary = ("empty", "wrong_type", "truncate")
    st = {"huge": safetensors_huge}
    js = {"huge": json_huge, "wrong_shape": json_wrong_shape, "non_utf8": non_utf8}
    return [
        Target(
            "safetensors",
            "methods.cosettle.heads.load_projection (projection.safetensors)",
            s["projection"] / "projection.safetensors",
            lambda p: load_projection(p.parent, expect_dim=192),
            "projection.safetensors",
            names=both,
            mutations=GENERIC + ("huge",),
            extra=st,
            validate=is_head,
            detectable=(*binary, "huge"),
            prepare=lambda c: projection_dir(c, "projection.safetensors"),
        ),
        Target(
            "safetensors",
            "backbones.load_encoder(checkpoint=*.safetensors) (converted encoder weights)",
            s["encoder_safetensors"],
            lambda p: load_encoder("random_vit_tiny16", checkpoint=p),
            "encoder.safetensors",
            mutations=GENERIC + ("huge",),
            extra=st,
            validate=is_encoder,
            detectable=(*binary, "huge"),
        ),
        Target(
            "checkpoint.pt",
            "train.checkpoint.load_checkpoint",
            s["checkpoint"],
            load_checkpoint,
            "checkpoint.pt",
            validate=lambda v: isinstance(v, dict) or (_ for _ in ()).throw(AssertionError(v)),
            detectable=binary,
        ),
        Target(
            "checkpoint.pt",
            "backbones.load_encoder(checkpoint=*.pth) (released-format encoder weights)",
            s["encoder_pth"],
            lambda p: load_encoder("random_vit_tiny16", checkpoint=p),
            "encoder.pth",
            validate=is_encoder,
            detectable=binary,
        ),
        Target(
            "config.json",
            "methods.cosettle.heads.load_projection (config.json)",
            s["projection"] / "config.json",
            lambda p: load_projection(p.parent, expect_dim=192),
            "config.json",
            names=both,
            mutations=GENERIC + tuple(js),
            extra=js,
            validate=is_head,
            detectable=("empty", "truncate", "non_utf8"),
            prepare=lambda c: projection_dir(c, "config.json"),
        ),
    ]


def view_bank_targets(s: dict) -> list[Target]:
    import json

    from videorep.methods.cosettle.viewbank import ViewBankDataset

    meta = json.loads((s["view_bank"] / "meta.json").read_text())

    def bank_dir(case: Path, replace: str) -> Path:
        shutil.copytree(s["view_bank"], case)
        return case / replace

    def read_bank(p: Path):  # noqa: ANN202
        ds = ViewBankDataset(p.parent)
        return [ds[i]["tokens"] for i in range(len(ds))]

    def check(items) -> None:  # noqa: ANN001
        assert len(items) == meta["shape"][0], (len(items), meta["shape"])
        for t in items:
            assert list(t.shape) == meta["shape"][1:], (list(t.shape), meta["shape"])

    js = {"huge": json_huge, "wrong_shape": json_wrong_shape, "non_utf8": non_utf8}
    return [
        Target(
            "view bank",
            "methods.cosettle.viewbank.ViewBankDataset (tokens.f16, .npy format)",
            s["view_bank"] / "tokens.f16",
            read_bank,
            "tokens.f16",
            names=both,
            mutations=GENERIC + ("huge",),
            extra={"huge": npy_huge},
            validate=check,
            detectable=("empty", "wrong_type", "truncate", "huge"),
            prepare=lambda c: bank_dir(c, "tokens.f16"),
        ),
        Target(
            "config.json",
            "methods.cosettle.viewbank.ViewBankDataset (meta.json)",
            s["view_bank"] / "meta.json",
            read_bank,
            "meta.json",
            names=both,
            mutations=GENERIC + tuple(js),
            extra=js,
            validate=check,
            detectable=("empty", "truncate", "non_utf8"),
            prepare=lambda c: bank_dir(c, "meta.json"),
        ),
    ]


def feature_cache_targets(s: dict) -> list[Target]:
    from videorep.eval.feature_cache import CachingEncoder

    encoder, images = s["encoder"], s["cache_images"]
    expected = CachingEncoder(encoder)(images)

    def cache_dir(case: Path, replace: str | None) -> Path:
        shutil.copytree(s["feature_cache"], case)
        return case / (replace or s["feature_cache_entry"].name)

    def read_cache(p: Path):  # noqa: ANN202
        return CachingEncoder(encoder, p.parent)(images)

    def check(tokens) -> None:  # noqa: ANN001
        assert isinstance(tokens, torch.Tensor) and tokens.shape == expected.shape, tokens.shape
        assert tokens.dtype == expected.dtype

    return [
        Target(
            "feature cache",
            "eval.feature_cache.CachingEncoder (<key>.safetensors entry)",
            s["feature_cache_entry"],
            read_cache,
            s["feature_cache_entry"].name,
            validate=check,
            detectable=("empty", "wrong_type", "truncate"),
            prepare=lambda c: cache_dir(c, None),
        ),
        Target(
            "feature cache",
            "eval.feature_cache.CachingEncoder (encoder.txt tag)",
            s["feature_cache"] / "encoder.txt",
            read_cache,
            "encoder.txt",
            names=both,
            mutations=TEXT,
            extra={"non_utf8": non_utf8, "text_junk": text_junk},
            validate=check,
            detectable=(),
            prepare=lambda c: cache_dir(c, "encoder.txt"),
        ),
    ]


def list_targets(s: dict) -> list[Target]:
    text = {"non_utf8": non_utf8, "text_junk": text_junk}

    def davis(case: Path) -> Path:
        shutil.copytree(s["davis"], case / "DAVIS")
        return case / "DAVIS" / "ImageSets" / "2017" / "val.txt"

    def vip(case: Path) -> Path:
        shutil.copytree(s["vip"], case / "VIP")
        return case / "VIP" / "lists" / "val_videos.txt"

    def jhmdb(case: Path) -> Path:
        case.mkdir(parents=True)
        return case / "list.txt"

    def sources(case: Path) -> Path:
        shutil.copytree(s["frames"], case / "frames")
        return case / "frames" / "train.txt"

    def run_davis(p: Path):  # noqa: ANN202
        root = p.parents[2]
        return [load_sequence(root, n) for n in list_sequences(root, 2017, "val")]

    def run_vip(p: Path):  # noqa: ANN202
        from videorep.data.vip import list_videos

        root = p.parents[1]
        return [load_vip_video(root, n) for n in list_videos(root)]

    def run_jhmdb(p: Path):  # noqa: ANN202
        from videorep.data.jhmdb import list_videos

        return [load_jhmdb_video(s["jhmdb"], n) for n in list_videos(s["jhmdb"], p)]

    def names_root(levels: int):  # noqa: ANN202
        return lambda p: [str(p), str(p.parents[levels])]

    common = dict(mutations=TEXT, extra=text, detectable=("empty", "non_utf8"))
    return [
        Target(
            "split/list .txt",
            "data.davis.list_sequences + load_sequence (ImageSets/2017/val.txt)",
            s["davis_split"],
            run_davis,
            "val.txt",
            names=names_root(2),
            prepare=davis,
            **common,
        ),
        Target(
            "split/list .txt",
            "data.vip.list_videos + load_video (lists/val_videos.txt)",
            s["vip_list"],
            run_vip,
            "val_videos.txt",
            names=names_root(1),
            prepare=vip,
            **common,
        ),
        Target(
            "split/list .txt",
            "data.jhmdb.list_videos + load_video (--list)",
            s["jhmdb_list"],
            run_jhmdb,
            "list.txt",
            names=lambda p: [str(p), str(s["jhmdb"])],
            prepare=jhmdb,
            **common,
        ),
        Target(
            "split/list .txt",
            "data.sources.discover_sources (.txt list of training sources, warn + skip)",
            s["sources_list"],
            lambda p: [len(x) for x in discover_sources([p])],
            "train.txt",
            names=names_root(0),
            mode="skip",
            prepare=sources,
            mutations=TEXT,
            extra=text,
            detectable=(),
        ),
    ]


def mat_targets(s: dict) -> list[Target]:
    def check(value) -> None:  # noqa: ANN001
        assert isinstance(value, np.ndarray) and value.shape[1:] == (15, 2), value.shape

    return [
        Target(
            "joints .mat",
            "data.jhmdb.load_joints",
            s["mat"],
            load_joints,
            "joint_positions.mat",
            validate=check,
            detectable=("empty", "wrong_type", "truncate"),
        )
    ]


def all_targets(s: dict) -> dict[str, list[Target]]:
    groups: dict[str, list[Target]] = {}
    for make in (
        video_targets,
        image_targets,
        annotation_targets,
        weights_targets,
        view_bank_targets,
        feature_cache_targets,
        list_targets,
        mat_targets,
    ):
        for t in make(s):
            groups.setdefault(t.file_type, []).append(t)
    assert set(groups) == set(CASES), set(groups) ^ set(CASES)
    return groups


def wrong_type_pool(s: dict) -> dict[str, bytes]:
    """Bytes of other file types, put behind each target's extension by ``wrong_type``."""
    keys = ["mp4", "webm", "jpg", "png", "checkpoint", "encoder_safetensors", "mat", "davis_split"]
    pool = {k: s[k].read_bytes()[:200_000] for k in keys}
    pool["json"] = (s["projection"] / "config.json").read_bytes()
    pool["html"] = b"<html><body>404 Not Found</body></html>\n"
    return pool

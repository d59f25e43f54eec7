"""Nothing videorep reads from disk can execute code.

A malicious pickle (an object whose ``__reduce__`` creates a marker file when unpickled) is put in
every place the project reads a file from: the training checkpoint (``--resume``), the on-disk
feature cache, the view bank, an encoder ``--checkpoint`` and an exported projection. Each test
asserts that the payload never ran (no marker file) and that the user gets one
:class:`VideorepError` naming the file.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
from pathlib import Path

import pytest
import torch

from videorep.cli import main
from videorep.errors import VideorepError


class Payload:
    """Unpickling this object runs ``touch MARKER`` (what an attacker's file would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def write_malicious(path: Path, marker: Path, how: str = "torch") -> Path:
    """Write a pickle that creates ``marker`` when loaded (``torch.save`` or plain ``pickle``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"format": "videorep-checkpoint-v1", "step": 1, "payload": Payload(marker)}
    if how == "torch":
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj))
    return path


def test_payload_really_runs_when_unpickled(tmp_path) -> None:
    """The fixture works: an unrestricted load of the file runs the payload."""
    marker = tmp_path / "pwned"
    path = write_malicious(tmp_path / "evil.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_training_checkpoint_on_resume(frame_folders, tmp_path, capsys) -> None:
    out, marker = tmp_path / "run", tmp_path / "pwned"
    ckpt = write_malicious(out / "checkpoint.pt", marker)
    args = [
        "train",
        "cosettle",
        "--data",
        str(frame_folders),
        "--out",
        str(out),
        "--backbone",
        "random_vit_tiny16",
        "--size",
        "32",
        "--pool",
        "1",
        "--batch-size",
        "4",
        "--max-steps",
        "2",
        "--no-progress",
        "--resume",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert not marker.exists(), "loading the checkpoint ran the payload"
    lines = [line for line in err.splitlines() if line.startswith("videorep: error:")]
    assert len(lines) == 1 and str(ckpt) in lines[0], err
    assert "Traceback" not in err


class Counting:
    patch_size, embed_dim, name = 4, 3, "counting"

    def grid(self, h: int, w: int) -> tuple[int, int]:
        return h // 4, w // 4

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True).flatten(2).transpose(1, 2).repeat(1, 1, 3)


def test_feature_cache_entry(tmp_path) -> None:
    from videorep.eval.feature_cache import CachingEncoder

    cache, marker = tmp_path / "cache", tmp_path / "pwned"
    images = torch.rand(1, 3, 8, 8)
    CachingEncoder(Counting(), cache)(images)
    entries = [p for p in cache.iterdir() if p.name != "encoder.txt"]
    assert len(entries) == 1
    write_malicious(entries[0], marker)
    with pytest.raises(VideorepError) as info:
        CachingEncoder(Counting(), cache)(images)
    assert not marker.exists(), "reading the feature cache ran the payload"
    assert str(entries[0]) in str(info.value)


def test_view_bank_tokens(tmp_path) -> None:
    from videorep.methods.cosettle.viewbank import BANK_FORMAT, ViewBankDataset

    folder, marker = tmp_path / "view_bank", tmp_path / "pwned"
    folder.mkdir()
    meta = {"format": BANK_FORMAT, "identity": {}, "views": 1, "items": 1}
    (folder / "meta.json").write_text(json.dumps({**meta, "shape": [1, 3, 4, 8], "grid": [2, 2]}))
    for how in ("pickle", "torch"):
        tokens = write_malicious(folder / "tokens.f16", marker, how)
        with pytest.raises(VideorepError) as info:
            ViewBankDataset(folder)[0]
        assert not marker.exists(), "reading the view bank ran the payload"
        assert str(tokens) in str(info.value)


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".tar"])
def test_encoder_checkpoint(tmp_path, suffix) -> None:
    from videorep.backbones import load_encoder

    marker = tmp_path / "pwned"
    path = write_malicious(tmp_path / f"dino{suffix}", marker)
    with pytest.raises(VideorepError) as info:
        load_encoder("dino_vits16", path)
    assert not marker.exists(), "reading the encoder checkpoint ran the payload"
    assert str(path) in str(info.value)


def test_projection_weights(tmp_path) -> None:
    from videorep.methods.cosettle.heads import ProjectionHead, load_projection, save_projection

    marker = tmp_path / "pwned"
    folder = save_projection(ProjectionHead(8), tmp_path / "proj")
    weights = write_malicious(folder / "projection.safetensors", marker)
    with pytest.raises(VideorepError) as info:
        load_projection(folder)
    assert not marker.exists(), "reading the projection ran the payload"
    assert str(weights) in str(info.value)


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, 2)
        self.norm = torch.nn.BatchNorm1d(2)
        self.register_buffer("input_resolution", torch.tensor(224))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


def _torchscript_archive(path: Path) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(_Tiny()).save(str(path))
    return path


def test_torchscript_weights_are_read_without_running_the_archive(tmp_path) -> None:
    """OpenAI CLIP's TorchScript archives: the tensors equal ``torch.jit.load``'s state dict."""
    import warnings

    from videorep.backbones.loading import read_checkpoint

    path = _torchscript_archive(tmp_path / "clip.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ref = torch.jit.load(str(path)).state_dict()
    got = read_checkpoint(path)
    assert sorted(got) == sorted(ref)
    for key, value in ref.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key


def test_torchscript_archive_with_a_malicious_pickle(tmp_path) -> None:
    import zipfile

    from videorep.backbones.loading import read_checkpoint

    marker = tmp_path / "pwned"
    good = _torchscript_archive(tmp_path / "good.pt")
    bad = tmp_path / "clip.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("/data.pkl"):
                data = pickle.dumps({"payload": Payload(marker)}, protocol=2)
            dst.writestr(item, data)
    with pytest.raises(VideorepError) as info:
        read_checkpoint(bad)
    assert not marker.exists(), "reading the TorchScript archive ran the payload"
    assert str(bad) in str(info.value)

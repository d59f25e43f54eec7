"""Resumable evaluation: kill and resume, the per-folder lock, and full disks.

Fields that legitimately differ between an interrupted-and-resumed run and an uninterrupted one
are ``timing`` (wall-clock seconds; the resumed run also lists the kept items) and
``provenance`` (its command line names the output folder). Everything else in ``results.json``
and every prediction PNG must be identical.
"""

from __future__ import annotations

import ast
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eval_layouts import make_davis, make_vip

from videorep.errors import VideorepError
from videorep.eval.core import FeatureExtractor
from videorep.eval.davis import run_davis
from videorep.eval.propagation import PropagationConfig
from videorep.eval.runner import KILL_HOOK, STALE_LOCK_SECONDS, RunFolder
from videorep.eval.vip import run_vip

REPO = Path(__file__).resolve().parents[2]
VARYING = ("timing", "provenance")  # excluded from the comparisons, see the module docstring
SEQS = ("alpha", "beta", "gamma")
CFG = PropagationConfig(topk=5, queue=3, radius=4)


def _stable(out: Path) -> str:
    """results.json without the varying fields, as canonical JSON text (NaN compares equal)."""
    rep = json.loads((out / "results.json").read_text())
    for key in VARYING:
        rep.pop(key)
    return json.dumps(rep, sort_keys=True)


def _pngs(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*.png"))
        if ".eval" not in p.parts
    }


def _davis_root(tmp_path: Path, n_frames: int = 5) -> Path:
    root = tmp_path / "DAVIS"
    for name in SEQS:
        make_davis(root, n_frames=n_frames, name=name)
    return root


def _cli(args: list[str], env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    env.pop(KILL_HOOK, None)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "videorep.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path):
    root = _davis_root(tmp_path)
    args = ["eval", "davis", "--root", str(root), "--backbone", "random_vit_tiny16"]
    args += ["--size", "64x96", "--deterministic"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    ok = _cli([*args, "--out", str(full)])
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr.startswith("videorep ") and ", device cpu" in ok.stderr.splitlines()[0]

    # the process SIGKILLs itself right after the first sequence's record is written
    killed = _cli([*args, "--out", str(cut)], {KILL_HOOK: "1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    folder = RunFolder(cut)
    assert sorted(p.name for p in folder.done_dir.iterdir()) == ["alpha.json"]
    assert folder.lock_path.is_file() and not (cut / "results.json").exists()
    # what a kill in the middle of "beta" leaves: some of its PNGs (here wrong ones: an earlier
    # run's), a temporary file, no record
    (cut / "beta").mkdir()
    (cut / "beta" / "00000.png").write_bytes((full / "gamma" / "00003.png").read_bytes())
    (cut / "beta" / "00001.png").write_bytes((full / "alpha" / "00001.png").read_bytes())
    (cut / "beta" / ".00002.png.999.tmp").write_bytes(b"\x89PNG partial")

    resumed = _cli([*args, "--out", str(cut), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert "taking over a stale lock" in resumed.stderr and "no longer running" in resumed.stderr
    assert "resuming: 1 of 3 kept" in resumed.stdout
    rows = [ln.split()[0] for ln in resumed.stdout.splitlines() if ln.startswith(SEQS)]
    assert rows == list(SEQS)  # the kept row too, in split order

    assert _stable(cut) == _stable(full)
    assert _pngs(cut) == _pngs(full) and len(_pngs(full)) == 3 * 5
    timing = json.loads((cut / "results.json").read_text())["timing"]
    assert timing["resumed"] == ["alpha"] and len(timing["per_sequence"]) == 3
    assert not folder.lock_path.exists()  # released at the end
    rep = json.loads((cut / "results.json").read_text())
    assert rep["provenance"]["device"] == "cpu" and rep["provenance"]["torch"]
    assert "--resume" in rep["provenance"]["command"]


def test_resume_keeps_checked_items_and_redoes_the_rest(tmp_path, colour_encoder):
    root = _davis_root(tmp_path, n_frames=4)
    ex = FeatureExtractor(colour_encoder, (64, 96))
    out = tmp_path / "out"
    first = run_davis(root, 2017, "val", ex, CFG, out, log=lambda s: None)
    reference, pngs = _stable(out), _pngs(out)
    assert "resumed" not in first["timing"]

    (out / "beta" / "00002.png").unlink()  # a finished item whose files are no longer intact
    gamma = out / "gamma" / "00001.png"
    gamma.write_bytes(pngs["alpha/00000.png"])  # another frame: different bytes
    assert gamma.read_bytes() != pngs["gamma/00001.png"]
    lines: list[str] = []
    rep = run_davis(root, 2017, "val", ex, CFG, out, log=lines.append, resume=True)
    assert f"beta: {out / 'beta' / '00002.png'} is missing; evaluating it again" in lines
    assert f"gamma: {gamma} differs from the recorded file; evaluating it again" in lines
    assert rep["timing"]["resumed"] == ["alpha"]
    assert _stable(out) == reference and _pngs(out) == pngs

    # resuming a complete run evaluates nothing and rewrites the same results
    rep = run_davis(root, 2017, "val", ex, CFG, out, log=lambda s: None, resume=True)
    assert rep["timing"]["resumed"] == list(SEQS) and _stable(out) == reference

    # --visualize wants the strips: records written without them are redone
    lines.clear()
    run_davis(root, 2017, "val", ex, CFG, out, log=lines.append, resume=True, visualize=True)
    assert "alpha: was evaluated without --visualize; evaluating it again" in lines
    assert (out / "vis" / "alpha" / "strip_00000.png").is_file() and _stable(out) == reference

    # without --resume an existing folder is evaluated again from scratch (as before resume)
    rep = run_davis(root, 2017, "val", ex, CFG, out, log=lambda s: None)
    assert "resumed" not in rep["timing"] and _stable(out) == reference


def test_resume_with_other_settings_is_refused(tmp_path, colour_encoder):
    root = _davis_root(tmp_path, n_frames=3)
    ex = FeatureExtractor(colour_encoder, (64, 96))
    out = tmp_path / "out"
    run_davis(root, 2017, "val", ex, CFG, out, sequences=["alpha"], log=lambda s: None)
    before = (out / "results.json").read_bytes()
    with pytest.raises(VideorepError, match=r"run\.json: --resume with other settings .*topk"):
        run_davis(root, 2017, "val", ex, PropagationConfig(topk=3), out, resume=True)
    vip = make_vip(tmp_path / "VIP", videos=("v1",), n_frames=4, every=3)
    with pytest.raises(VideorepError, match=r"--resume of a 'davis' run as 'vip'"):
        run_vip(vip, ex, CFG, out, resume=True)
    assert (out / "results.json").read_bytes() == before
    assert not RunFolder(out).lock_path.exists()


def test_resume_vip_keeps_predictions(tmp_path, colour_encoder):
    """The VIP outputs (PNGs of the annotated frames only) are what its records check."""
    root = make_vip(tmp_path / "VIP", videos=("v1", "v2"), n_frames=7, every=3)
    ex = FeatureExtractor(colour_encoder, (96, 112))
    out = tmp_path / "out"
    run_vip(root, ex, CFG, out, log=lambda s: None)
    reference, pngs = _stable(out), _pngs(out)
    record = json.loads(RunFolder(out).record_path("v2").read_text())
    assert sorted(record["files"]) == ["v2/001003.png", "v2/001006.png"]
    (out / "v2" / "001006.png").unlink()
    rep = run_vip(root, ex, CFG, out, log=lambda s: None, resume=True)
    assert rep["timing"]["resumed"] == ["v1"]
    assert _stable(out) == reference and _pngs(out) == pngs


# ----------------------------------------------------------------------------- the lock


def _write_lock(out: Path, pid: int, host: str, age_s: float = 0.0) -> Path:
    folder = RunFolder(out)
    folder.dir.mkdir(parents=True, exist_ok=True)
    folder.lock_path.write_text(json.dumps({"pid": pid, "host": host, "started": time.time()}))
    t = time.time() - age_s
    os.utime(folder.lock_path, (t, t))
    return folder.lock_path


def test_second_run_on_a_locked_folder_is_refused(tmp_path, colour_encoder):
    root = _davis_root(tmp_path, n_frames=3)
    ex = FeatureExtractor(colour_encoder, (64, 96))
    out = tmp_path / "out"
    live = subprocess.Popen(["sleep", "120"])
    try:
        lock = _write_lock(out, live.pid, socket.gethostname())
        content = lock.read_text()
        with pytest.raises(
            VideorepError,
            match=rf"another evaluation is writing to this folder \(pid {live.pid} on ",
        ):
            run_davis(root, 2017, "val", ex, CFG, out, log=lambda s: None)
        assert lock.read_text() == content  # the holder's lock is untouched
        assert not (out / "alpha").exists() and not (out / "results.json").exists()
    finally:
        live.kill()
        live.wait()
    # a lock of another host refreshed recently is respected too
    _write_lock(out, 12345, "another-host", age_s=60)
    with pytest.raises(VideorepError, match="pid 12345 on another-host"):
        run_davis(root, 2017, "val", ex, CFG, out, log=lambda s: None)


def test_stale_lock_is_taken_over_with_a_warning(tmp_path, colour_encoder, capsys):
    root = _davis_root(tmp_path, n_frames=3)
    ex = FeatureExtractor(colour_encoder, (64, 96))
    out = tmp_path / "out"
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its pid is no longer running
    lock = _write_lock(out, gone.pid, socket.gethostname())
    run_davis(root, 2017, "val", ex, CFG, out, log=lambda s: None)
    err = capsys.readouterr().err
    assert f"taking over a stale lock (pid {gone.pid} on this host is no longer running)" in err
    assert (out / "results.json").is_file() and not lock.exists()

    _write_lock(out, 12345, "another-host", age_s=STALE_LOCK_SECONDS + 60)
    run_davis(root, 2017, "val", ex, CFG, out, log=lambda s: None)
    assert "pid 12345 on another-host, not refreshed for 6.0 h" in capsys.readouterr().err
    assert not lock.exists()


# ----------------------------------------------------------------------------- full disk


def _fail_writes_to(monkeypatch, fragment: str, call: str) -> None:
    """Make ``os.<call>`` fail with ENOSPC on files whose path contains ``fragment``."""
    real = getattr(os, call)

    def fake(fd, *rest):  # noqa: ANN001, ANN202
        if fragment in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, *rest)

    monkeypatch.setattr(os, call, fake)


def test_full_disk_on_results_json_keeps_the_previous_results(
    tmp_path, colour_encoder, monkeypatch
):
    root = _davis_root(tmp_path, n_frames=3)
    ex = FeatureExtractor(colour_encoder, (64, 96))
    out = tmp_path / "out"
    run_davis(root, 2017, "val", ex, CFG, out, log=lambda s: None)
    before = (out / "results.json").read_bytes()
    _fail_writes_to(monkeypatch, "results.json", "fsync")
    with pytest.raises(
        VideorepError,
        match=r"results\.json: cannot write \(No space left on device\); any previous version",
    ):
        run_davis(root, 2017, "val", ex, PropagationConfig(topk=2), out, log=lambda s: None)
    assert (out / "results.json").read_bytes() == before
    assert not list(out.glob(".results.json*"))  # no temporary file left behind
    assert not RunFolder(out).lock_path.exists()


def test_full_disk_on_a_prediction_png_is_one_clear_error(tmp_path, colour_encoder, monkeypatch):
    root = _davis_root(tmp_path, n_frames=3)
    ex = FeatureExtractor(colour_encoder, (64, 96))
    out = tmp_path / "out"
    run_davis(root, 2017, "val", ex, CFG, out, log=lambda s: None)
    before = (out / "results.json").read_bytes()
    _fail_writes_to(monkeypatch, "beta/.00001.png", "write")
    with pytest.raises(VideorepError, match=r"beta/00001\.png: cannot write \(No space left"):
        run_davis(root, 2017, "val", ex, CFG, out, log=lambda s: None)
    assert (out / "results.json").read_bytes() == before
    assert RunFolder(out).check_record("alpha", False)[0] is not None
    assert RunFolder(out).check_record("beta", False) == (None, None)
    monkeypatch.undo()
    # the space is back: the resumed run keeps what the failed run finished
    rep = run_davis(root, 2017, "val", ex, CFG, out, log=lambda s: None, resume=True)
    assert rep["timing"]["resumed"] == ["alpha"]
    assert (
        json.loads((out / "results.json").read_text())["JF_mean"] == json.loads(before)["JF_mean"]
    )


# ----------------------------------------------------------------------------- command line


def test_cli_has_resume_for_every_benchmark():
    import argparse

    from videorep.eval import commands
    from videorep.eval.runner import BENCHMARKS

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    assert list(BENCHMARKS) == ["davis", "vip", "jhmdb"]
    for name in BENCHMARKS:
        args = parser.parse_args(["eval", name, "--root", "R", "--out", "O", "--resume"])
        assert args.resume and args.benchmark == name and args.func is commands.run_eval_command
        assert not parser.parse_args(["eval", name, "--root", "R", "--out", "O"]).resume


def test_eval_never_imports_train():
    """Layering: evaluation sits beside training, never on top of it (function-local included)."""
    offenders = []
    for path in sorted((REPO / "src" / "videorep" / "eval").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            offenders += [f"{path.name}: {m}" for m in mods if m.startswith("videorep.train")]
    assert offenders == []


def test_os_error_while_evaluating_is_one_clear_error(tmp_path, colour_encoder, monkeypatch):
    from videorep.eval import davis

    root = _davis_root(tmp_path, n_frames=3)
    ex = FeatureExtractor(colour_encoder, (64, 96))
    mp4 = tmp_path / "out" / "vis" / "alpha" / "alpha.mp4"

    def full_disk(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(mp4))

    monkeypatch.setattr(davis, "evaluate_sequence", full_disk)
    with pytest.raises(
        VideorepError, match=r"alpha\.mp4: No space left on device \(while evaluating alpha\)"
    ):
        run_davis(root, 2017, "val", ex, CFG, tmp_path / "out", log=lambda s: None)
    assert not RunFolder(tmp_path / "out").lock_path.exists()

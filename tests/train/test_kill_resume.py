"""SIGKILL in the middle of a checkpoint write, ``--resume``, and the result is bit-identical.

``videorep train cosettle`` runs as a real subprocess with a checkpoint after every step; the
test hook ``VIDEOREP_TEST_KILL_IN_SAVE=after-temp-write:K`` makes it SIGKILL itself (no handler
runs) inside its K-th checkpoint save, after the temporary file is written and before the rename
- deterministically, not by a timing race. It is resumed and killed again, then resumed to the
end. The exported projection must equal the uninterrupted run's byte for byte, and the log must
hold each step exactly once with the same losses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from resume_checks import assert_same_run

STEPS = 24


def command(frames: Path, out: Path, resume: bool = False) -> list[str]:
    args = [sys.executable, "-m", "videorep.cli", "train", "cosettle", "--data", str(frames)]
    args += ["--out", str(out), "--backbone", "random_vit_tiny16", "--size", "32", "--pool", "1"]
    args += ["--batch-size", "4", "--lr", "1e-3", "--max-steps", str(STEPS), "--save-every", "1"]
    args += ["--warmup-epochs", "0.5", "--no-progress"]
    return args + (["--resume"] if resume else [])


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def test_kill_between_temp_write_and_rename_then_resume_is_bit_identical(
    frame_folders, tmp_path
) -> None:
    """A deterministic mid-write kill (``VIDEOREP_TEST_KILL_IN_SAVE``), twice, then resume."""
    steps = 8
    base = command(frame_folders, tmp_path / "reference")
    base[base.index("--max-steps") + 1] = str(steps)
    done = subprocess.run(base, env=ENV, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]

    out = tmp_path / "killed"
    cmd = command(frame_folders, out)
    cmd[cmd.index("--max-steps") + 1] = str(steps)
    # first process: killed inside its 3rd save (step 3): checkpoint.pt still holds step 2
    # second process (resumed at 2): killed inside its 3rd save (step 5): checkpoint holds 4
    for attempt, expect_step in ((0, 2), (1, 4)):
        env = {**ENV, "VIDEOREP_TEST_KILL_IN_SAVE": "after-temp-write:3"}
        run = subprocess.run(cmd + (["--resume"] if attempt else []), env=env, capture_output=True)
        assert run.returncode == -signal.SIGKILL, run.stderr.decode()[-2000:]
        assert len(list(out.glob(".checkpoint.pt.*.tmp"))) == 1  # the unrenamed write
        ckpt = torch.load(out / "checkpoint.pt", weights_only=True)  # the previous one, intact
        assert int(ckpt["step"]) == expect_step
    done = subprocess.run(cmd + ["--resume"], env=ENV, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert not list(out.glob(".*.tmp"))  # the killed writes' temp files are cleaned up
    assert_same_run(tmp_path / "reference", out, steps)

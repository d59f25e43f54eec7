"""``VIDEOREP_REQUIRE_DATA=1`` (set by .ci/run) turns a skip for missing data into a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_probe(shared_data) -> None:  # noqa: ANN001
    """Run only by the test below (``VIDEOREP_PROBE=1``): asks for shared data that is absent."""
    if os.environ.get("VIDEOREP_PROBE") == "1":
        shared_data("data/no-such-dataset")


def _run_probe(require: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIDEOREP_PROBE": "1", "VIDEOREP_REQUIRE_DATA": require}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    cmd += [f"{Path(__file__).name}::test_probe"]
    return subprocess.run(cmd, cwd=Path(__file__).parent, env=env, capture_output=True, text=True)


def test_missing_shared_data_skips_locally_and_fails_under_the_ci_flag() -> None:
    local = _run_probe("")
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout
    assert "shared data data/no-such-dataset not found at" in local.stdout  # -rs prints it
    ci = _run_probe("1")
    assert ci.returncode == 1 and "1 failed" in ci.stdout, ci.stdout
    assert "VIDEOREP_REQUIRE_DATA=1: CI requires it" in ci.stdout

"""Fixtures for the whole suite: the shared data folder, required packages, generated frames.

Shared data (the DAVIS sample, notes) lives in ``../shared`` next to the repository root; its one
definition is :data:`SHARED`. Tests reach it through the ``shared_data`` / ``davis_sample``
fixtures and optional packages through ``require_module``: when something is missing they skip
with a clear reason, except under ``VIDEOREP_REQUIRE_DATA=1`` (set by ``.ci/run``), where every
skip - these and any other - is turned into a failure, so CI never passes by skipping.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REQUIRE_DATA = os.environ.get("VIDEOREP_REQUIRE_DATA", "") not in ("", "0")


def missing(what: str) -> None:
    """Skip the test because ``what`` is missing; fail instead under ``VIDEOREP_REQUIRE_DATA``."""
    if REQUIRE_DATA:
        pytest.fail(f"{what} (VIDEOREP_REQUIRE_DATA=1: CI requires it)", pytrace=False)
    pytest.skip(f"{what} (CI sets VIDEOREP_REQUIRE_DATA=1 and fails here)")


def shared_path(relative: str) -> Path:
    """``SHARED / relative``, or skip/fail (see :func:`missing`) when it is not there."""
    path = SHARED / relative
    if not path.exists():
        missing(f"shared data {relative} not found at {path}")
    return path


def require_module(name: str) -> ModuleType:
    """Import ``name``, or skip/fail when the package is genuinely absent (``make install``).

    Only absence skips: a package that is installed but fails to import is an error.
    """
    try:
        found = importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is absent
        found = False
    if not found:
        missing(f"{name} is not installed (make install installs it)")
    return importlib.import_module(name)


@pytest.fixture(scope="session")
def shared_data() -> Callable[[str], Path]:
    """``shared_data("data/davis-sample")`` -> the path under ``../shared`` (see above)."""
    return shared_path


@pytest.fixture(scope="session")
def davis_sample() -> Path:
    """The 3-sequence DAVIS sample (``../shared/data/davis-sample``)."""
    return shared_path("data/davis-sample")


@pytest.fixture(scope="session")
def require() -> Callable[[str], ModuleType]:
    """``require("onnxruntime")`` -> the module, or skip/fail when it is not installed."""
    return require_module


def _fail_skips(report) -> None:  # noqa: ANN001
    if REQUIRE_DATA and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, but VIDEOREP_REQUIRE_DATA=1 forbids skips: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: ANN001, ANN201
    """Under ``VIDEOREP_REQUIRE_DATA=1`` a skipped test (importorskip, skipif, ...) fails."""
    outcome = yield
    _fail_skips(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):  # noqa: ANN001, ANN201
    """Likewise for a module skipped at import (a module-level ``importorskip``)."""
    outcome = yield
    _fail_skips(outcome.get_result())


def write_frame_folders(root: Path, videos: int = 8, frames: int = 8, size: int = 48) -> Path:
    """``videos`` folders of ``frames`` PNGs each: a bright blob moving over smooth noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for v in range(videos):
        folder = root / f"video{v}"
        folder.mkdir(parents=True)
        base = rng.integers(0, 256, (6, 6, 3)).astype(np.uint8)
        background = np.asarray(Image.fromarray(base).resize((size, size), Image.BICUBIC))
        cy, cx, vy, vx = rng.uniform(10, 38, 2).tolist() + rng.uniform(-3, 3, 2).tolist()
        for t in range(frames):
            blob = np.exp(-((yy - cy - vy * t) ** 2 + (xx - cx - vx * t) ** 2) / 40.0)
            img = background * (1 - blob[..., None]) + 255 * blob[..., None] * [1, 0.5, 0]
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{t:05d}.png")
    return root


@pytest.fixture(scope="session")
def frame_folders(tmp_path_factory) -> Path:
    """8 generated frame folders of 8 PNG frames (48 x 48)."""
    return write_frame_folders(tmp_path_factory.mktemp("frames") / "frames")

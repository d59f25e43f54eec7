"""Shared check of the resume tests: a resumed run ends exactly as the uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path


def assert_same_run(reference: Path, out: Path, steps: int) -> None:
    """Byte-identical exported projection, and the same step-by-step log of ``steps`` losses."""
    a = (reference / "projection" / "projection.safetensors").read_bytes()
    b = (out / "projection" / "projection.safetensors").read_bytes()
    assert a == b
    ref = [json.loads(x) for x in (reference / "log.jsonl").read_text().splitlines()]
    got = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in got] == list(range(1, steps + 1))
    assert [r["loss"] for r in got] == [r["loss"] for r in ref]

"""In-process fuzzing of every reader: a seeded fast part and a 10x longer ``slow`` part.

For each file type the cases are split over its readers; every case must end as a correct
load, a :class:`~videorep.errors.VideorepError` naming the file, or (training data) a warning
naming the file and a skip; see ``fuzzlib`` for the rule.
"""

from __future__ import annotations

from collections import Counter

import pytest
from fuzzlib import run_target
from targets import CASES

FILE_TYPES = sorted(CASES)


def fuzz(file_type: str, groups: dict, pool: dict, tmp_path, slow: bool, seed: int) -> Counter:
    targets = groups[file_type]
    total = CASES[file_type][1 if slow else 0]
    counts: Counter = Counter()
    failures = []
    for k, target in enumerate(targets):
        n = total // len(targets) + (1 if k < total % len(targets) else 0)
        c, f = run_target(target, n, seed + 7919 * k, pool, tmp_path / f"t{k}")
        counts += c
        failures += [f"{target.reader}: {x}" for x in f]
    assert sum(counts.values()) == total
    assert not failures, f"{len(failures)} of {total} cases failed:\n" + "\n".join(failures[:20])
    return counts


@pytest.mark.parametrize("file_type", FILE_TYPES)
def test_fuzz_fast(file_type, groups, pool, tmp_path) -> None:
    counts = fuzz(file_type, groups, pool, tmp_path, slow=False, seed=20240)
    assert counts["error"] + counts["skipped"] > 0  # the mutations do reach the error paths


@pytest.mark.slow
@pytest.mark.parametrize("file_type", FILE_TYPES)
def test_fuzz_slow(file_type, groups, pool, tmp_path) -> None:
    counts = fuzz(file_type, groups, pool, tmp_path, slow=True, seed=777)
    assert counts["error"] + counts["skipped"] > 0


def test_docs_table_matches_the_case_counts() -> None:
    """``docs/fuzz.md`` reports the numbers this harness runs."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "fuzz.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[3].isdigit():
            rows[cells[0]] = (int(cells[3]), int(cells[4]))
    assert rows == CASES

"""Fixtures for the fuzz harness: one set of valid seed files per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def seeds(tmp_path_factory) -> dict:
    """Valid seed files of every type (see ``seeds.make_seeds``)."""
    import torch
    from seeds import make_seeds

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return make_seeds(tmp_path_factory.mktemp("seeds"))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def groups(seeds) -> dict:
    from targets import all_targets

    return all_targets(seeds)


@pytest.fixture(scope="session")
def pool(seeds) -> dict:
    from targets import wrong_type_pool

    return wrong_type_pool(seeds)

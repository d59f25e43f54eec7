"""Fixtures for the evaluation tests (generators live in ``eval_layouts``)."""

from __future__ import annotations

import pytest
from eval_layouts import ColourEncoder


@pytest.fixture
def colour_encoder() -> ColourEncoder:
    return ColourEncoder()

"""Fixtures of the integration tests: ``api``, the in-process API of a seeded installation
(``apihelpers.running_api``). A module that needs another installation defines its own ``api``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from apihelpers import ApiContext, running_api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiContext]:
    """The API of a seeded installation (see ``apihelpers``), with one user and token per role."""
    yield from running_api(tmp_path)

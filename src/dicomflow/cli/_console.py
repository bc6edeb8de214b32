"""Rich consoles, made when a command first prints: importing Rich costs every process of ``dicomflow serve``
(forked from the command line) about 4 MiB, so no module of the command line imports it at load time."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


@functools.cache
def stderr() -> Console:
    """The console of progress, summaries and errors (standard error)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)

"""Types shared by the SDK's modules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

OnSent = Callable[[Path, int], None]
"""Called once per file sent, with its path and size (from the sending threads)."""

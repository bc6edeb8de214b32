"""Options shared by several commands, and the Settings they build."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dicomflow.config import Settings

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default: DICOMFLOW_DATA_DIR or ./dicomflow-data)."),
]


def load_settings(data_dir: Path | None = None, **overrides: object) -> Settings:
    """Settings from the environment and TOML file, with command-line values on top."""
    settings = Settings()  # type: ignore[call-arg]  # pydantic-settings fills fields from the environment
    return settings.with_overrides(data_dir=data_dir, **overrides)

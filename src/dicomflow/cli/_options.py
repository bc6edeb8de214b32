"""Options shared by several commands, and the Settings they build."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import typer

from dicomflow.errors import ConfigError, NotFound

if TYPE_CHECKING:
    from dicomflow.config import Settings

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default: DICOMFLOW_DATA_DIR or ./dicomflow-data)."),
]


class MissingDataDir(NotFound):
    """A command that reads was pointed at a data directory that does not exist or holds no index."""

    hint: ClassVar[str] = (
        "pass --data-dir (or set DICOMFLOW_DATA_DIR) naming the directory `dicomflow serve` uses"
    )


def load_settings(data_dir: Path | None = None, **overrides: object) -> Settings:
    """Settings from the command line, the environment and the TOML file, in that order of precedence.

    Raises
    ------
    ConfigError
        When a variable or a TOML value is invalid; the message names it.
    """
    from pydantic import ValidationError

    from dicomflow.config import Settings

    try:
        given: dict[str, Any] = {} if data_dir is None else {"data_dir": data_dir}  # its TOML file is read
        settings = Settings(**given)
        return settings.with_overrides(**overrides)
    except ValidationError as exc:
        raise ConfigError("; ".join(_invalid(error) for error in exc.errors())) from None


def _invalid(error: object) -> str:
    """``DICOMFLOW_DIMSE__PORT (dimse.port in the TOML file) = 'x': Input should be …``."""
    details = dict(error)  # type: ignore[call-overload]  # pydantic's ErrorDetails is a TypedDict
    location = [str(part) for part in details.get("loc", ())]
    variable = "DICOMFLOW_" + "__".join(location).upper()
    return (
        f"{variable} ({'.'.join(location)} in the TOML file) = {details.get('input')!r}: {details.get('msg')}"
    )


def require_index(settings: Settings) -> None:
    """Refuse to read from a data directory that does not exist or holds no index (rather than create one).

    Raises
    ------
    MissingDataDir
        With the directory in the message.
    """
    if settings.index.url:
        return  # a database of its own: its server says whether it exists
    if not settings.data_dir.exists():
        raise MissingDataDir(f"data directory {settings.data_dir} does not exist")
    if not settings.data_dir.is_dir():
        raise MissingDataDir(f"data directory {settings.data_dir} is not a directory")
    if not (settings.data_dir / "index.sqlite3").is_file():
        raise MissingDataDir(f"{settings.data_dir} holds no dicomflow index (no index.sqlite3)")

"""``dicomflow demo-data``: write synthetic studies (a CT body phantom, an MR T1 + FLAIR study)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class Kind(StrEnum):
    """``dicomflow.demo.DemoKind``, repeated here: importing the demo package costs numpy and scipy."""

    CT = "ct"
    MR = "mr"
    ALL = "all"


def demo_data(
    out: Annotated[Path, typer.Argument(help="Directory to write the studies into.")] = Path("demo-data"),
    kind: Annotated[
        Kind, typer.Option(help="ct: chest phantom; mr: T1 + FLAIR with lesions; all: both.")
    ] = Kind.ALL,
    patients: Annotated[int, typer.Option(min=1, help="Number of demo patients.")] = 1,
) -> None:
    """Write synthetic studies with known volumes and lesions as DICOM files, one folder per study."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from dicomflow.demo import demo_file_count, write_demo_data

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("writing demo data", total=demo_file_count(kind.value, patients))

        def advance(path: Path) -> None:
            progress.update(task, advance=1, description=f"writing {path.parent.name}")

        paths = write_demo_data(out, kind=kind.value, patients=patients, progress=advance)
    studies = sorted({path.parent.name for path in paths})
    typer.echo(f"wrote {len(paths)} files in {len(studies)} studies to {out}: {', '.join(studies)}")

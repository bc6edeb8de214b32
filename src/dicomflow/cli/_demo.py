"""``dicomflow demo-data``: write synthetic studies (a CT body phantom, an MR T1 + FLAIR study)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dicomflow.demo import DemoKind


def demo_data(
    out: Annotated[Path, typer.Argument(help="Directory to write the studies into.")] = Path("demo-data"),
    kind: Annotated[
        DemoKind, typer.Option(help="ct: chest phantom; mr: T1 + FLAIR with lesions; all: both.")
    ] = DemoKind.ALL,
    patients: Annotated[int, typer.Option(min=1, help="Number of demo patients.")] = 1,
) -> None:
    """Write synthetic studies with known volumes and lesions as DICOM files, one folder per study."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from dicomflow.demo import write_demo_data

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), transient=True) as progress:
        task = progress.add_task("writing demo data", total=None)

        def advance(path: Path) -> None:
            progress.update(task, advance=1, description=f"writing {path.parent.name}/{path.name}")

        paths = write_demo_data(out, kind=kind, patients=patients, progress=advance)
    studies = sorted({path.parent.name for path in paths})
    typer.echo(f"wrote {len(paths)} files in {len(studies)} studies to {out}: {', '.join(studies)}")

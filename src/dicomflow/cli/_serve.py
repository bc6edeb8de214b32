"""``dicomflow serve``: the receiver processes and the HTTP API, on one machine."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from dicomflow.cli._options import DataDir, load_settings


def serve(
    data_dir: DataDir = None,
    dimse_port: Annotated[int | None, typer.Option(help="DICOM receiver port (default 11112).")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP API port (default 8080).")] = None,
    ae_title: Annotated[
        str | None, typer.Option(help="AE title of the receiver (default DICOMFLOW).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Receiving processes (default: 1 per core, at least 2).")
    ] = None,
) -> None:
    """Run the DICOM receiver and the HTTP API until interrupted.

    Start-up changes nothing until it knows it can run: it takes the data directory's lock (one server per
    data directory) and binds both ports first; only then does it migrate the index and recover unfinished
    writes. Either failure is one line on stderr and exit status 1.
    """
    from dicomflow.errors import ConfigError
    from dicomflow.serve import serve as run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings(
        data_dir,
        **{
            "dimse.port": dimse_port,
            "http.port": http_port,
            "dimse.ae_title": ae_title,
            "dimse.workers": workers,
        },
    )
    try:
        run(settings)
    except ConfigError as exc:
        typer.echo(f"dicomflow serve: {exc.message}", err=True)
        raise typer.Exit(1) from None

"""The Typer application; each command group lives in its own module."""

from __future__ import annotations

import typer

from dicomflow.cli import _admin, _demo, _node, _processing, _serve, _transfer, _upload

app = typer.Typer(help="dicomflow: receive, index, place and process medical images.", no_args_is_help=True)
app.command("serve")(_serve.serve)
_transfer.register(app)
_admin.register(app)
_processing.register(app)
app.command("demo-data")(_demo.demo_data)
app.command("node")(_node.node)
app.command("upload")(_upload.upload)


def main() -> None:
    """Entry point of the ``dicomflow`` console script."""
    app()

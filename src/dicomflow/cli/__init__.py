"""The ``dicomflow`` command line."""

from dicomflow.cli._app import app, main

__all__ = ["app", "main"]

"""The HTTP API: the FastAPI app factory, native routes under ``/api/v1`` and the error mapping."""

from dicomflow.api._app import create_app

__all__ = ["create_app"]

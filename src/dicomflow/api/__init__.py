"""The HTTP API: the FastAPI app factory, native routes under ``/api/v1`` and the error mapping.

``create_app`` is imported on first use, so that importing a module of the package (the process start-up
in :mod:`dicomflow.api._server`) does not import FastAPI and every route.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dicomflow.api._app import create_app

_ON_FIRST_USE = {"create_app": "._app"}

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name not in _ON_FIRST_USE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_ON_FIRST_USE[name], __name__), name)

"""Process start-up: the application object every adapter of one process shares.

Importing the package imports nothing heavy: :func:`import_pydicom_without_pixel_libraries` must be able
to run before anything imports pydicom; the application is imported on first use of its names.
"""

import importlib
from typing import TYPE_CHECKING, Any

from dicomflow.runtime._imports import PIXEL_LIBRARIES, import_pydicom_without_pixel_libraries

if TYPE_CHECKING:
    from dicomflow.runtime._application import Application, load_report_types_of, open_application

_ON_FIRST_USE = {
    "Application": "._application",
    "load_report_types_of": "._application",
    "open_application": "._application",
}

__all__ = [
    "PIXEL_LIBRARIES",
    "Application",
    "import_pydicom_without_pixel_libraries",
    "load_report_types_of",
    "open_application",
]


def __getattr__(name: str) -> Any:
    if name not in _ON_FIRST_USE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_ON_FIRST_USE[name], __name__), name)

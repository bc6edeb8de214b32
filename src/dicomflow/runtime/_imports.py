"""What the long-lived processes of ``dicomflow serve`` import: pydicom without the pixel libraries.

pydicom imports numpy and Pillow at its own import whenever they are installed (about 20 MiB in every
process), although only decoding pixel data needs them. The supervisor of ``dicomflow serve`` and its
receiving and HTTP processes read headers and copy bytes, never pixels; and a process forked from the
supervisor carries everything the supervisor had imported. So the supervisor imports pydicom first, with
numpy and Pillow hidden for that one import. Job workers are fresh interpreters (a forkserver) and get
pydicom with both; a module that imports numpy itself (a report type's pipeline code) still gets it.
pydicom likewise imports requests and tqdm whenever installed (about 5 MiB), for downloading its own test
files: hidden too.
"""

from __future__ import annotations

import importlib
import sys

PIXEL_LIBRARIES = ("numpy", "PIL")
"""Imported by pydicom when installed, needed only to decode pixel data."""
_DOWNLOAD_LIBRARIES = ("requests", "tqdm")  # pydicom.data's, to fetch pydicom's own example files
_HIDDEN = PIXEL_LIBRARIES + _DOWNLOAD_LIBRARIES


def import_pydicom_without_pixel_libraries() -> bool:
    """Import pydicom with numpy and Pillow (and requests and tqdm) hidden; call first thing in a process
    that never decodes pixels.

    Returns
    -------
    bool
        True if pydicom is now imported without them; False (and nothing done) if pydicom or one of them
        is imported already: the process needs them, or it is too late to leave them out.
    """
    if any(name in sys.modules for name in ("pydicom", *PIXEL_LIBRARIES)):
        return False
    hidden = [name for name in _HIDDEN if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # None makes `import name` raise ImportError
    try:
        importlib.import_module("pydicom")
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return True

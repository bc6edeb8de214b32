"""Safe reading of uploaded archives and the names uploaded files are stored under.

The upload sessions themselves are the use cases of :mod:`dicomflow.usecases.uploads`.
"""

from dicomflow.uploads._archive import ArchiveRefused, Extracted, ZipLimits, extract, is_zip
from dicomflow.uploads._names import sanitize, stored_name

__all__ = [
    "ArchiveRefused",
    "Extracted",
    "ZipLimits",
    "extract",
    "is_zip",
    "sanitize",
    "stored_name",
]

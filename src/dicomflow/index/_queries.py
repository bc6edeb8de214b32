"""Kept for modules not yet moved: the transactions and ``as_utc`` live in :mod:`dicomflow.index._db`,
the queries in the repositories :mod:`~dicomflow.index.catalog` and :mod:`~dicomflow.index.instances`."""

from dicomflow.index._db import as_utc, reading, writing

__all__ = ["as_utc", "reading", "writing"]

"""Use cases: one function per thing a user does, called by every adapter (HTTP, DIMSE, CLI, uploads).

Each module is a capability (``access``, ``review``, ``uploads``, ...); each use case takes the process's
:class:`~dicomflow.runtime.Application` (and, where projects are walled, the caller's
:class:`~dicomflow.usecases.access.Access`) and returns frozen dataclasses or :mod:`dicomflow.schemas`
models. Adapters translate in and out and never reach the index or SQLAlchemy themselves.
"""

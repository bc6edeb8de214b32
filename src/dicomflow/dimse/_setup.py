"""Process-wide set-up of pynetdicom and pydicom, and the ingest stack of one process."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pydicom.config
import pynetdicom.acse
import pynetdicom.association
import pynetdicom.dul
from pynetdicom import _config as pynetdicom_config

from dicomflow.config import Settings
from dicomflow.dimse._reactor import ReactorClock


def _prefer_requestor_order(negotiate: Callable[..., Any]) -> Callable[..., Any]:
    """Accept, per presentation context, the first transfer syntax *the requestor* lists that we support.

    pynetdicom accepts the first of the acceptor's syntaxes that the requestor proposed, so a sender that
    offers ``[JPEG Lossless, Explicit VR LE]`` for a JPEG file (``dcmsend`` does) would be made to
    decompress it. We store what the sender has: its first choice wins.
    """
    if getattr(negotiate, "_dicomflow", False):
        return negotiate

    def wrapped(rq_contexts: list[Any], ac_contexts: list[Any], roles: Any = None) -> Any:
        accepted, roles_out = negotiate(rq_contexts, ac_contexts, roles)
        supported = {str(cx.abstract_syntax): {str(ts) for ts in cx.transfer_syntax} for cx in ac_contexts}
        requested = {cx.context_id: cx for cx in rq_contexts}
        for cx in accepted:
            proposal = requested.get(cx.context_id)
            if cx.result != 0x00 or proposal is None:
                continue
            ours = supported.get(str(cx.abstract_syntax), set())
            first = next((ts for ts in proposal.transfer_syntax if str(ts) in ours), None)
            if first is not None:
                cx.transfer_syntax = [first]
        return accepted, roles_out

    wrapped._dicomflow = True  # type: ignore[attr-defined]  # a marker attribute on the wrapper function
    return wrapped


def reactor_clock() -> ReactorClock | None:
    """The clock ``configure`` installed in pynetdicom, if any."""
    clock = getattr(pynetdicom.dul, "time", None)
    return clock if isinstance(clock, ReactorClock) else None


def configure(settings: Settings) -> None:
    """Set pynetdicom's and pydicom's process-wide flags for a receiving process (the only place)."""
    pynetdicom_config.LOG_HANDLER_LEVEL = "none"
    pynetdicom.acse.negotiate_as_acceptor = _prefer_requestor_order(pynetdicom.acse.negotiate_as_acceptor)  # type: ignore[attr-defined]  # pynetdicom does not re-export it
    clock = ReactorClock()  # one per process: reactors' idle polls become event waits (see _reactor.py)
    pynetdicom.association.time = clock  # type: ignore[assignment,attr-defined]  # module-like stand-in
    pynetdicom.dul.time = clock  # type: ignore[assignment,attr-defined]  # module-like stand-in
    # Headers are indexed as they are; bad values are reported by validity checks, not refused here.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE  # file meta of pynetdicom
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)

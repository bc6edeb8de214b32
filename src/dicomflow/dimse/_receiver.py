"""The C-ECHO / C-STORE SCP: AE setup, association routing by AE title, and the C-STORE handler.

Each receiving process runs one :class:`Receiver` on a listening socket it shares with its siblings
(see :mod:`dicomflow.serve`); every handler only translates between DIMSE and
:mod:`dicomflow.usecases.receive`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # generated at import
from pynetdicom.transport import ThreadedAssociationServer

from dicomflow.dicom import encode_file_meta
from dicomflow.dimse import _reactor
from dicomflow.dimse import _status as status
from dicomflow.dimse._admission import Admission, set_timeouts
from dicomflow.dimse._framing import BoundedSocket, PduBound
from dicomflow.dimse._pdata import FastStore, StoreRequest
from dicomflow.dimse._peers import AllowedPeers
from dicomflow.dimse._setup import reactor_clock
from dicomflow.errors import DicomflowError, InvalidInstance, PermissionDenied, UnknownProject
from dicomflow.placement import project_from_called_ae
from dicomflow.usecases import receive
from dicomflow.usecases.receive import Source

if TYPE_CHECKING:  # dicomflow.jobs imports the sender of this package: no import of runtime at run time
    from dicomflow.runtime import Application

LOGGER = logging.getLogger(__name__)

# Explicit VR Little Endian first: pynetdicom accepts the first of our syntaxes the requestor proposes,
# and storing what the sender has (never transcoding) is the point.
TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
]


class Receiver:
    """One process's DICOM receiver.

    Parameters
    ----------
    application
        The process's application: its ``settings.dimse`` (AE title, aliases, limits, timeouts), its
        ``ingestor`` (the ingest use case) and its index ``engine`` (to check that a called ``kp-`` AE names
        an existing project).
    max_associations
        This process's share of ``settings.max_associations`` (default: all of it).
    max_pending_connections
        This process's share of ``settings.max_pending_connections`` (default: all of it).

    With ``settings.performance.fast_paths`` on, C-STORE requests are received in the DUL thread
    (``_pdata.py``) and the reactors wait for events (``_reactor.py``); off, pynetdicom's own code does both,
    reading each connection through a ``_framing.BoundedSocket`` (the PDU bound ``_pdata.py`` applies).
    """

    def __init__(
        self,
        application: Application,
        *,
        max_associations: int | None = None,
        max_pending_connections: int | None = None,
    ) -> None:
        settings = application.settings.dimse
        self.settings = settings
        self.fast_paths = application.settings.performance.fast_paths
        self.max_associations = max_associations or settings.max_associations
        self.admission = Admission(
            self.max_associations,
            max_pending_connections or settings.max_pending_connections,
            settings.acse_timeout,
        )
        self.application = application
        self.peers = AllowedPeers(settings.allowed_peers)
        self.ae = self._build_ae()

    def _build_ae(self) -> AE:
        ae = AE(ae_title=self.settings.ae_title)
        ae.maximum_pdu_size = self.settings.max_pdu_size
        # pynetdicom counts every connection, associated or not, against its bound: ours (``admission``)
        # bounds the two apart, so pynetdicom's must never be the one reached
        ae.maximum_associations = _UNBOUNDED
        ae.network_timeout = self.settings.idle_timeout
        ae.acse_timeout = self.settings.acse_timeout
        ae.dimse_timeout = self.settings.idle_timeout
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        return ae

    def handlers(self) -> list[Any]:
        """The pynetdicom event handlers of this receiver."""
        return [
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_CONN_OPEN, self.on_connection),
            (evt.EVT_CONN_CLOSE, self.on_connection_closed),
            (evt.EVT_C_ECHO, lambda _event: status.SUCCESS),
            (evt.EVT_C_STORE, self.on_store),
        ]

    def serve(self, listening: socket.socket) -> ThreadedAssociationServer:
        """Serve associations accepted from ``listening`` (shared with sibling processes) in a thread."""
        attributes = {
            "shared_socket": listening,
            "admission": self.admission,
            "network_timeout": self.settings.network_timeout,
            "pdu_bound": None if self.fast_paths else PduBound(self.settings.max_pdu_size),
        }
        server_class = type("SharedSocketServer", (_SharedSocketServer,), attributes)
        address = listening.getsockname()[:2]
        server = self.ae.make_server(address, evt_handlers=self.handlers(), server_class=server_class)
        self.ae._servers.append(server)  # so that server.shutdown() finds it, as with ae.start_server()
        thread = threading.Thread(target=server.serve_forever, name="dimse-acceptor", daemon=True)
        thread.start()
        return server

    def on_connection(self, event: Any) -> None:
        """Count the connection as pending (see ``_admission.py``); with fast paths on, make this
        association's reactors wait for events instead of polling (see ``_reactor.py``) and receive C-STORE
        requests in its DUL thread (see ``_pdata.py``)."""
        assoc = event.assoc
        self.admission.connected(assoc)
        if not self.fast_paths:
            return
        clock = reactor_clock()
        if clock is not None:
            _reactor.make_event_driven(clock, assoc)
        store = FastStore(
            assoc, lambda request: self.on_fast_store(assoc, request), self.settings.max_pdu_size
        )
        store.install()

    def on_connection_closed(self, event: Any) -> None:
        """Free what the connection held."""
        self.admission.closed(event.assoc)
        _reactor.release(event.assoc)

    def on_requested(self, event: Any) -> None:
        """Reject, at association time, a peer not allowed, a called AE that names no existing project,
        and an association over this process's share of the bound (A-ASSOCIATE-RJ)."""
        assoc = event.assoc
        called = str(assoc.requestor.primitive.called_ae_title).strip()
        refusal = self.peer_refusal(assoc) or self.called_ae_refusal(called)
        if refusal is not None:
            error, reason = refusal
            receive.refuse(
                self.application, Source("dimse", _actor(assoc), _calling_ae(assoc), called), "", error
            )
            _reject(assoc, status.REJECTED_PERMANENT, status.SOURCE_SERVICE_USER, reason)
        elif not self.admission.requested(assoc):
            LOGGER.warning(
                "association from %s refused: %d associations already", _actor(assoc), self.max_associations
            )
            _reject(
                assoc,
                status.REJECTED_TRANSIENT,
                status.SOURCE_PROVIDER_PRESENTATION,
                status.REASON_LOCAL_LIMIT_EXCEEDED,
            )

    def peer_refusal(self, assoc: Any) -> tuple[DicomflowError, int] | None:
        """Why the calling AE and address may not associate (``dimse.allowed_peers``), or ``None``."""
        if self.peers.allows(_calling_ae(assoc), str(assoc.requestor.address)):
            return None
        error = PermissionDenied(f"peer {_actor(assoc)!r} is not in DICOMFLOW_DIMSE__ALLOWED_PEERS")
        return error, status.REASON_CALLING_AE_NOT_RECOGNISED

    def called_ae_refusal(self, called: str) -> tuple[DicomflowError, int] | None:
        """Why the called AE is refused, or ``None``: only a ``kp-`` AE that names no existing project is;
        any other goes to the placement rules (as Orthanc accepts any called AE)."""
        project = project_from_called_ae(called, self.settings.project_ae_prefix)
        if project is None or self._project_exists(project):
            return None
        error = UnknownProject(f"called AE title not recognised: {called!r} names no existing project")
        return error, status.REASON_CALLED_AE_NOT_RECOGNISED

    def _project_exists(self, label: str) -> bool:
        return receive.project_exists(self.application, label)

    def on_store(self, event: Any) -> int | Dataset:
        """Store one instance; success is returned only once it is durable and indexed.

        A request whose SOP Class is not the one its presentation context was accepted for is refused
        (0x0122), as pynetdicom refuses it in its own C-STORE SCP; ``FastStore`` leaves it to this path.
        """
        command = event.request
        if str(event.context.abstract_syntax) != str(command.AffectedSOPClassUID):
            comment = f"SOP Class not accepted on presentation context {event.context.context_id}"
            LOGGER.warning(
                "C-STORE of %s from %s refused: %s", command.AffectedSOPClassUID, _actor(event.assoc), comment
            )
            return status.status_dataset(status.SOP_CLASS_NOT_SUPPORTED, comment)
        return self._store(
            event.assoc,
            str(command.AffectedSOPClassUID),
            str(command.AffectedSOPInstanceUID),
            str(event.context.transfer_syntax),
            lambda meta: meta + command.DataSet.getvalue(),
        )

    def on_fast_store(self, assoc: Any, request: StoreRequest) -> tuple[int, str | None]:
        """:meth:`on_store` for a request received by ``_pdata.FastStore``: status and error comment."""
        uids = (request.sop_class_uid, request.sop_instance_uid, request.transfer_syntax_uid)
        outcome = self._store(assoc, *uids, request.part10)
        if isinstance(outcome, int):
            return outcome, None
        return int(outcome.Status), str(outcome.ErrorComment)

    def source(self, assoc: Any) -> Source:
        """Who sends on this association, and to which called AE (the project route)."""
        called_ae = str(assoc.requestor.primitive.called_ae_title).strip()
        return Source("dimse", _actor(assoc), calling_ae=_calling_ae(assoc), called_ae=called_ae)

    def _store(
        self,
        assoc: Any,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        part10: Callable[[bytes], bytes | memoryview],
    ) -> int | Dataset:
        source = self.source(assoc)
        try:
            meta = encode_file_meta(
                sop_class_uid,
                sop_instance_uid,
                transfer_syntax_uid,
                source.calling_ae or "",
                fast_paths=self.fast_paths,
            )
            receive.receive_bytes(
                self.application, [part10(meta)], source, expected_sop_instance_uid=sop_instance_uid
            )
        except UnicodeEncodeError:
            error = InvalidInstance("the C-STORE request names a SOP Class or Instance UID that is not ASCII")
            receive.refuse(self.application, source, sop_instance_uid[:64], error)
            return status.status_dataset(status.CANNOT_UNDERSTAND, error.message)
        except DicomflowError as exc:
            return status.status_dataset(status.status_for(exc), exc.message)
        except Exception as exc:
            LOGGER.exception("C-STORE from %s failed", source.actor)
            return status.status_dataset(status.PROCESSING_FAILURE, f"internal error: {type(exc).__name__}")
        return status.SUCCESS


_UNBOUNDED = 1 << 30


def _reject(assoc: Any, result: int, source: int, reason: int) -> None:
    assoc.acse.send_reject(result, source, reason)
    assoc.kill()  # as pynetdicom's own rejections do: lets the DUL send the A-ASSOCIATE-RJ first


def _calling_ae(assoc: Any) -> str:
    # from the A-ASSOCIATE-RQ itself: requestor.ae_title is only filled in after negotiation
    return str(assoc.requestor.primitive.calling_ae_title).strip()


def _actor(assoc: Any) -> str:
    return f"{_calling_ae(assoc)}@{assoc.requestor.address}"


class _SharedSocketServer(ThreadedAssociationServer):
    """A pynetdicom server that accepts from a listening socket shared by several processes.

    The socket is non-blocking: when a sibling wins the race for a connection, ``accept`` raises
    ``BlockingIOError``, which socketserver ignores. A process already serving associations waits a little
    before accepting, so that idle siblings take new connections first (balance across cores). With a
    ``pdu_bound`` (fast paths off), each connection is handed to pynetdicom as a ``BoundedSocket``.
    """

    shared_socket: socket.socket
    admission: Admission
    network_timeout: float
    pdu_bound: PduBound | None
    daemon_threads = True

    def server_bind(self) -> None:
        if self.socket is not None:
            self.socket.close()
        self.socket = self.shared_socket
        self.server_address = self.socket.getsockname()

    def server_activate(self) -> None:
        """The shared socket is listening already."""

    def get_request(self) -> tuple[socket.socket, Any]:
        if self.admission.associations >= self.admission.max_associations:
            time.sleep(0.05)  # full: a sibling with room should take it; if none does, it is refused as busy
        elif busy := min(self.admission.connections, self.admission.max_associations):
            time.sleep(0.004 * busy)  # a connection not yet associated soon will be: it counts here
        conn, address = self.shared_socket.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        set_timeouts(conn, self.network_timeout)
        if self.pdu_bound is not None:
            conn = BoundedSocket.wrap(conn, self.pdu_bound, str(address[0]))
        return conn, address

    def service_actions(self) -> None:
        """Also, twice a second: end connections that sent no A-ASSOCIATE-RQ within the ACSE timeout."""
        super().service_actions()
        self.admission.reap()

    def server_close(self) -> None:
        """Leave the shared socket open for the siblings; the supervisor closes it."""

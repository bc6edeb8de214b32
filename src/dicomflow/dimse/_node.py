"""The receiver of ``dicomflow node``: one report type as its own SCP, as DicomNode runs a pipeline.

An instance that no input of the report type accepts is refused with a configurable status (0xB007 by
default, as DicomNode documents but does not send) and an ErrorComment, and is not stored. When an
association is *released* (not aborted: a half-sent study is never processed), the groups it touched are
offered to the flow, which starts a job once every input has its series.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import evt

from dicomflow.dicom import encode_file_meta
from dicomflow.dimse import _status as status
from dicomflow.dimse._receiver import Receiver, _actor
from dicomflow.errors import DicomflowError, InvalidInstance
from dicomflow.usecases import receive
from dicomflow.usecases.receive import Source

if TYPE_CHECKING:  # dicomflow.jobs imports the sender of this package: no import of runtime at run time
    from dicomflow.runtime import Application

LOGGER = logging.getLogger(__name__)


class NodeReceiver(Receiver):
    """A receiver that stores only what ``accepts`` takes and reports released associations' studies.

    Parameters
    ----------
    application
        The node's application (see :class:`~dicomflow.dimse.Receiver`).
    accepts
        Whether an instance (header, no pixel data) belongs to any input; returns the reason when not.
    project
        Project the node files everything in.
    on_released
        Called with the StudyInstanceUIDs an association stored, after it was released normally.
    reject_status
        C-STORE status for an instance no input accepts (a warning, 0xB007, by default).
    """

    def __init__(
        self,
        application: Application,
        *,
        accepts: Callable[[Dataset], str | None],
        project: str,
        on_released: Callable[[set[str]], None],
        reject_status: int = 0xB007,
    ) -> None:
        super().__init__(application)
        self.accepts = accepts
        self.project = project
        self.on_released = on_released
        self.reject_status = reject_status
        self._touched: dict[Any, set[str]] = {}  # keyed by the Association object itself
        self._lock = threading.Lock()

    def handlers(self) -> list[Any]:
        """The receiver's handlers plus release and abort bookkeeping."""
        return [
            *super().handlers(),
            (evt.EVT_RELEASED, self._released),
            (evt.EVT_ABORTED, self._aborted),
        ]

    def called_ae_refusal(self, called: str) -> tuple[DicomflowError, int] | None:
        """Any called AE is the node (it has one purpose)."""
        return None

    def source(self, assoc: Any) -> Source:
        """As the receiver's, but everything goes to the node's project whatever the called AE."""
        own = super().source(assoc)
        return Source(
            "dimse",
            own.actor,
            calling_ae=own.calling_ae,
            called_ae=f"{self.settings.project_ae_prefix}{self.project}",
        )

    def _store(
        self,
        assoc: Any,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        part10: Callable[[bytes], bytes | memoryview],
    ) -> int | Dataset:
        """Refuse what no input accepts; store the rest through the receiver's path, into the project."""
        source = self.source(assoc)
        try:
            meta = encode_file_meta(
                sop_class_uid,
                sop_instance_uid,
                transfer_syntax_uid,
                source.calling_ae or "",
                fast_paths=self.fast_paths,
            )
            data = part10(meta)
            header = dcmread(io.BytesIO(data), stop_before_pixels=True)
        except Exception:
            error = InvalidInstance("the data set cannot be parsed")
            receive.refuse(self.application, source, sop_instance_uid[:64], error)
            return status.status_dataset(status.CANNOT_UNDERSTAND, error.message)
        refusal = self.accepts(header)
        if refusal is not None:
            receive.refuse(self.application, source, sop_instance_uid[:64], InvalidInstance(refusal))
            LOGGER.info("refused %s from %s: %s", sop_instance_uid, source.actor, refusal)
            return status.status_dataset(self.reject_status, refusal)
        outcome = super()._store(
            assoc, sop_class_uid, sop_instance_uid, transfer_syntax_uid, lambda _meta: data
        )
        if outcome == status.SUCCESS:
            with self._lock:
                self._touched.setdefault(assoc, set()).add(str(header.get("StudyInstanceUID", "")))
        return outcome

    def _released(self, event: Any) -> None:
        with self._lock:
            touched = self._touched.pop(event.assoc, set())
        if touched:
            try:
                self.on_released(touched)
            except Exception:
                LOGGER.exception("processing after the release of %s failed", _actor(event.assoc))

    def _aborted(self, event: Any) -> None:
        with self._lock:
            touched = self._touched.pop(event.assoc, set())
        if touched:
            LOGGER.warning(
                "association from %s aborted: %d study(ies) wait for a complete send",
                _actor(event.assoc),
                len(touched),
            )

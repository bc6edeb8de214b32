"""Canary of the patch in ``dimse._scu.keep_responses_for_the_requester`` (pynetdicom's private reactor API).

pynetdicom's reactor can take a C-STORE response off the queue in the instant ``send_c_store`` pauses it;
unpatched it drops it ("Received unexpected C-STORE service message") and the sender waits out its DIMSE
timeout. The patched association hands it back to the queue the sender reads.
"""

from __future__ import annotations

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE

from dicomflow.dimse._scu import keep_responses_for_the_requester


def _response() -> C_STORE:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 1
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    rsp.AffectedSOPInstanceUID = "1.2.3"
    rsp.Status = 0x0000
    return rsp


def test_a_response_the_reactor_takes_is_handed_back_to_the_sender() -> None:
    assoc = Association(AE(), "requestor")
    keep_responses_for_the_requester(assoc)

    assoc._serve_request(_response(), 1)  # what the reactor does with a message it got first

    context_id, msg = assoc.dimse.get_msg(block=False)  # what send_c_store then waits for
    assert context_id == 1 and isinstance(msg, C_STORE) and msg.Status == 0x0000


def test_unpatched_pynetdicom_still_drops_it() -> None:
    """If this fails, pynetdicom changed its reactor and the patch may be obsolete: look again."""
    assoc = Association(AE(), "requestor")

    assoc._serve_request(_response(), 1)

    assert assoc.dimse.get_msg(block=False) == (None, None)

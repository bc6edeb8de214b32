"""A burst of SIGTERMs stops a process waiting on them; none is lost and none dead-locks it.

A handler that sets a ``threading.Event`` takes the event's lock; a second signal handled while the first
handler holds it waits on that lock forever, on the same thread (a receiving process of ``dicomflow serve``
was found hung so, for 40 minutes, after its supervisor had gone). This ran one such hang in about 30 bursts.
"""

import os
import signal
import time

from dicomflow.serve import StopSignals

BURSTS = 100


def _child(ready: int) -> None:
    try:
        stop = StopSignals(signal.SIGTERM)
        os.write(ready, b"r")
        os._exit(0 if stop.wait() == signal.SIGTERM else 3)
    except BaseException:
        os._exit(4)


def _stops_in_time(pid: int, limit: float) -> int | None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def test_a_burst_of_sigterms_stops_the_waiter_every_time() -> None:
    outcomes = []
    for _ in range(BURSTS):
        ready, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            os.close(ready)
            _child(ready_w)
        os.close(ready_w)
        assert os.read(ready, 1) == b"r"
        os.close(ready)
        for _ in range(200):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                break
        outcomes.append(_stops_in_time(pid, 5.0))
    assert outcomes == [0] * BURSTS

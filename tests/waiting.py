"""``wait_until``: the one polling loop of the tests (a server, a job or a background thread catching up)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

__all__ = ["wait_until"]


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float = 60,
    interval: float = 0.05,
    message: str | Callable[[], str] = "",
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a truthy value, and return that value.

    Parameters
    ----------
    predicate
        Checked at once, then after each interval; it may itself ``assert`` what must hold while waiting
        (a process still alive), which fails the wait at once.
    timeout
        Seconds before giving up.
    interval
        Seconds between checks.
    message
        What the failure says (a function is called then, e.g. to read a log).

    Raises
    ------
    AssertionError
        If ``predicate`` stays falsy for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"not true after {timeout} s: {text or predicate}")
        time.sleep(interval)
    return value

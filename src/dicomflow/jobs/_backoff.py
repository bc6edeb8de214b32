"""How long a failed job attempt or export waits before the next: doubling, capped."""

from __future__ import annotations

from datetime import timedelta


def backoff(attempt: int, base: float, cap: float) -> timedelta:
    """Exponential back-off after the ``attempt``-th failure: ``base``, twice that, ... at most ``cap``.

    Parameters
    ----------
    attempt
        How many attempts failed so far (1 for the first failure).
    base, cap
        The first delay and the longest, in seconds.
    """
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempt - 1)))

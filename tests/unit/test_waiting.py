"""The tests' polling helper: returns the first truthy value, fails with the message after the timeout."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from waiting import wait_until


def test_returns_the_first_truthy_value() -> None:
    values: Iterator[object] = iter([None, 0, [], "ready"])

    assert wait_until(lambda: next(values), timeout=5, interval=0) == "ready"


def test_fails_after_the_timeout_with_the_message() -> None:
    calls = itertools.count()

    with pytest.raises(AssertionError, match="not true after 0.05 s: still 'importing'"):
        wait_until(lambda: next(calls) < 0, timeout=0.05, interval=0.01, message=lambda: "still 'importing'")


def test_an_assertion_in_the_predicate_fails_at_once() -> None:
    def dead() -> bool:
        raise AssertionError("the sender died")

    with pytest.raises(AssertionError, match="the sender died"):
        wait_until(dead, timeout=60)

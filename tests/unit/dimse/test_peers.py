"""``dimse.allowed_peers``: which calling AE titles and addresses may associate; what the setting takes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dicomflow.config import DimseSettings
from dicomflow.dimse._peers import AllowedPeers

ENTRIES = ["CT01", "10.1.0.0/16", "MR02@10.2.3.4", "US03@::1"]


@pytest.mark.parametrize(
    ("ae_title", "address", "allowed"),
    [
        ("CT01", "192.0.2.1", True),  # the AE title from anywhere
        ("OTHER", "10.1.200.3", True),  # anyone from the network
        ("MR02", "10.2.3.4", True),
        ("MR02", "10.2.3.5", False),  # that AE title only from that address
        ("OTHER", "10.2.3.4", False),
        ("US03", "::1", True),
        ("OTHER", "::ffff:10.1.0.9", True),  # IPv4-mapped IPv6 is its IPv4 address
        ("ct01", "192.0.2.1", False),  # AE titles are case-sensitive
        ("OTHER", "not-an-address", False),
    ],
)
def test_allowed_peers(ae_title: str, address: str, allowed: bool) -> None:
    assert AllowedPeers(ENTRIES).allows(ae_title, address) is allowed


def test_empty_list_allows_everyone() -> None:
    assert AllowedPeers([]).allows("ANYONE", "203.0.113.9")


@pytest.mark.parametrize(
    "entry", ["CT01@nowhere", "@10.0.0.1", "A-TITLE-LONGER-THAN-16", "", "X@10.0.0.0/33"]
)
def test_invalid_entries_are_refused_by_the_settings(entry: str) -> None:
    with pytest.raises(ValidationError, match="allowed peer"):
        DimseSettings.model_validate({"allowed_peers": [entry]})


def test_defaults_bound_the_receiver() -> None:
    settings = DimseSettings.model_validate({})
    assert settings.max_pdu_size == 1 << 20
    assert settings.network_timeout == 30
    assert settings.allowed_peers == []

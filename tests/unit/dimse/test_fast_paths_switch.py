"""``performance.fast_paths`` in the receiver: off, pynetdicom keeps its ``time`` module and PDU reading."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import SimpleNamespace

import pydicom.config
import pynetdicom.acse
import pynetdicom.association
import pynetdicom.dul
import pytest
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from pynetdicom.association import Association

from dicomflow.config import Settings
from dicomflow.dimse import Receiver, configure
from dicomflow.dimse._reactor import ReactorClock
from dicomflow.runtime import open_application

DUL, ASSOCIATION = pynetdicom.dul, pynetdicom.association  # their ``time`` is what configure swaps


@pytest.fixture
def restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever ``configure`` sets process-wide is put back after the test."""
    for module, name in [(DUL, "time"), (ASSOCIATION, "time"), (pynetdicom.acse, "negotiate_as_acceptor")]:
        monkeypatch.setattr(module, name, vars(module)[name])
    monkeypatch.setattr(pynetdicom_config, "LOG_HANDLER_LEVEL", pynetdicom_config.LOG_HANDLER_LEVEL)
    settings = pydicom.config.settings
    monkeypatch.setattr(settings, "reading_validation_mode", settings.reading_validation_mode)
    monkeypatch.setattr(settings, "writing_validation_mode", settings.writing_validation_mode)
    pynetdicom_logger = logging.getLogger("pynetdicom")
    monkeypatch.setattr(pynetdicom_logger, "level", pynetdicom_logger.level)


def _settings(tmp_path: Path, fast_paths: bool) -> Settings:
    return Settings.model_validate(
        {"data_dir": tmp_path, "storage": {"fsync": False}, "performance": {"fast_paths": fast_paths}}
    )


@pytest.mark.usefixtures("restored")
def test_configure_installs_the_reactor_clock_only_with_fast_paths(tmp_path: Path) -> None:
    configure(_settings(tmp_path, True))
    clock = vars(DUL)["time"]
    assert isinstance(clock, ReactorClock) and vars(ASSOCIATION)["time"] is clock
    configure(_settings(tmp_path, True))
    assert vars(DUL)["time"] is clock  # one per process: reactors registered with it keep it

    configure(_settings(tmp_path, False))
    assert vars(DUL)["time"] is time and vars(ASSOCIATION)["time"] is time


@pytest.mark.parametrize("fast_paths", [True, False], ids=["fast-paths", "stock"])
def test_the_receiver_reads_pdus_itself_only_with_fast_paths(tmp_path: Path, fast_paths: bool) -> None:
    application = open_application(_settings(tmp_path, fast_paths), migrate_index=False)
    try:
        receiver = Receiver(application)
        assoc = Association(AE(), "acceptor")
        stock_reader = assoc.dul._read_pdu_data
        receiver.on_connection(SimpleNamespace(assoc=assoc))

        assert receiver.fast_paths is application.ingestor.fast_paths is fast_paths
        assert (assoc.dul._read_pdu_data == stock_reader) is not fast_paths
        receiver.on_connection_closed(SimpleNamespace(assoc=assoc))
    finally:
        application.close()

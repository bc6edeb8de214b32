"""Canary: every private (or internal) part of a library that dicomflow touches has the shape we rely on.

dicomflow's fast paths (``performance.fast_paths``) and a few patches reach past the libraries' public APIs:

* pynetdicom: ``dimse/_pdata.py`` (the DUL's PDU reading, ``_decode_pdu``, ``_recv_pdu``, the association's
  ``_accepted_cx`` and ``_sent_release``), ``dimse/_reactor.py`` and ``dimse/_setup.py`` (the reactors'
  ``time`` module and 1 ms idle sleep, the acceptor's negotiation function, ``_config`` flags),
  ``dimse/_receiver.py`` (``AE._servers``), ``dimse/_scu.py`` (``Association._serve_request``, see also
  ``tests/unit/dimse/test_scu_race.py``);
* pydicom: ``dicom/_header.py`` and ``dicom/_file_meta.py`` (raw elements, the reader's and writer's
  building blocks, the data set's original encoding);
* uvicorn: ``serve/_http.py`` (``Server.server_state``, ``ServerState.connections``, the protocol class it
  builds itself, the lifespan's state: its ``UVICORN_PRIVATE``);
* Starlette and FastAPI: ``api/_guard.py`` and ``api/_fastlane.py`` (``cookie_parser``,
  ``get_authorization_scheme_param``, the router's route list);
* SQLAlchemy: ``index/_rows.py`` (the driver's own connection), ``index/catalog.py`` and
  ``index/instances.py`` (``Row._asdict``).

A version bump that changes one of them fails here, naming the library, the version installed and pinned,
and the attribute; ``DICOMFLOW_PERFORMANCE__FAST_PATHS=0`` runs the stock code meanwhile (the patches that
are fixes, not speed-ups, need their own look).
"""

from __future__ import annotations

import inspect
import queue
import sqlite3
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _pin(distribution: str) -> str:
    """The pin of ``distribution`` in pyproject.toml, or what brings it in."""
    dependencies = tomllib.loads(_PYPROJECT.read_text())["project"]["dependencies"]
    for line in dependencies:
        if line.lower().startswith(distribution.lower() + "=="):
            return str(line)
    return f"{distribution} is not pinned directly (it comes with fastapi)"


@dataclass(frozen=True)
class Canary:
    """One attribute of a library and the check of the shape we rely on."""

    distribution: str
    attribute: str
    used_by: str
    check: Callable[[], None]
    fenced: bool = True  # only used with performance.fast_paths on


def _require(holds: bool, problem: str) -> None:
    if not holds:
        raise AssertionError(problem)


def _parameters(function: Callable[..., Any], *names: str) -> None:
    _require(callable(function), "is not callable")
    found = list(inspect.signature(function).parameters)
    missing = [name for name in names if name not in found]
    _require(not missing, f"has parameters {found}, not {missing}")


def _uses(function: Callable[..., Any], *names: str) -> None:
    code = inspect.unwrap(function).__code__
    missing = [name for name in names if name not in code.co_names]
    _require(not missing, f"no longer looks up {missing}")


def _is(value: Any, kind: type | tuple[type, ...]) -> None:
    _require(isinstance(value, kind), f"is {type(value).__name__}, not {kind}")


# --- pynetdicom -------------------------------------------------------------------------------------------


def _association() -> Any:
    from pynetdicom import AE
    from pynetdicom.association import Association

    return Association(AE(), "acceptor")


def _dul_read_pdu_data() -> None:
    from pynetdicom.dul import DULServiceProvider

    _parameters(DULServiceProvider._read_pdu_data, "self")
    _uses(
        DULServiceProvider._is_transport_event, "_read_pdu_data"
    )  # looked up on the instance: ours replaces it


def _dul_decode_pdu() -> None:
    from pynetdicom.dul import DULServiceProvider

    _parameters(DULServiceProvider._decode_pdu, "self", "bytestream")
    pdu, event = _association().dul._decode_pdu(bytearray(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00"))
    _require(event == "Evt12", f"decodes an A-RELEASE-RQ as {type(pdu).__name__}, {event!r}, not Evt12")


def _dul_recv_pdu() -> None:
    _is(_association().dul._recv_pdu, queue.Queue)


def _dul_queues() -> None:
    dul = _association().dul
    for name in ("event_queue", "to_user_queue", "to_provider_queue"):
        _is(getattr(dul, name), queue.Queue)
    _require(dul.state_machine.current_state == "Sta1", "state machine has no current_state 'Sta1'")
    _require(hasattr(dul, "socket"), "has no socket")


def _dul_idle_sleep() -> None:
    import pynetdicom.dul

    _require(hasattr(vars(pynetdicom.dul).get("time"), "sleep"), "has no module time")
    _require(_association().dul._run_loop_delay == 0.001, "idle delay is not 1 ms")
    _uses(pynetdicom.dul.DULServiceProvider.run_reactor, "time", "sleep", "_run_loop_delay")


def _association_idle_sleep() -> None:
    import pynetdicom.association

    run = pynetdicom.association.Association._run_reactor
    _uses(run, "time", "sleep")
    _require(0.001 in run.__code__.co_consts, "no longer sleeps 1 ms when idle")


def _association_accepted_cx() -> None:
    _is(_association()._accepted_cx, dict)


def _association_sent_release() -> None:
    _require(_association()._sent_release is False, "is not False on a new association")


def _association_serve_request() -> None:
    from pynetdicom.association import Association

    _parameters(Association._serve_request, "self", "msg", "context_id")


def _dimse_provider() -> None:
    dimse = _association().dimse
    _is(dimse.msg_queue, queue.Queue)
    _require(dimse.message is None, "has no message None")
    _parameters(dimse.receive_primitive, "primitive")
    _parameters(dimse.send_msg, "primitive", "context_id")
    _require(hasattr(dimse, "maximum_pdu_size"), "has no maximum_pdu_size")


def _negotiate_as_acceptor() -> None:
    import pynetdicom.acse

    _parameters(vars(pynetdicom.acse)["negotiate_as_acceptor"], "rq_contexts", "ac_contexts", "roles")
    _uses(pynetdicom.acse.ACSE._negotiate_as_acceptor, "negotiate_as_acceptor")  # a module global


def _config_flags() -> None:
    from pynetdicom import _config

    for name in ("LOG_HANDLER_LEVEL", "STORE_SEND_CHUNKED_DATASET"):
        _require(hasattr(_config, name), f"has no {name}")


def _ae_servers() -> None:
    from pynetdicom import AE

    _is(AE()._servers, list)
    _uses(AE.shutdown, "_servers")


# --- pydicom ----------------------------------------------------------------------------------------------


def _raw_data_element() -> None:
    from pydicom.dataelem import RawDataElement

    missing = {"tag", "VR", "length", "value"} - set(RawDataElement._fields)
    _require(not missing, f"has no fields {missing}")


def _original_encoding() -> None:
    from io import BytesIO

    from pydicom import dcmread

    from factories import make_instance, to_bytes

    ds = dcmread(BytesIO(to_bytes(make_instance())), stop_before_pixels=True)
    _require(ds.is_little_endian is True and ds.is_implicit_VR is not None, "original encoding not kept")


def _reader_parts() -> None:
    from pydicom.filereader import read_dataset, read_preamble

    _parameters(read_preamble, "fp", "force")
    _parameters(read_dataset, "fp", "is_implicit_VR", "is_little_endian", "stop_when")


def _file_meta_writer() -> None:
    from pydicom.filebase import DicomFileLike
    from pydicom.filewriter import write_file_meta_info

    _parameters(write_file_meta_info, "fp", "file_meta", "enforce_standard")
    _parameters(DicomFileLike, "buffer")


# --- uvicorn ----------------------------------------------------------------------------------------------


def _uvicorn_config() -> Any:
    import uvicorn

    async def app(scope: Any, receive: Any, send: Any) -> None:
        """Never called."""

    config = uvicorn.Config(app, log_config=None, http="httptools", lifespan="on")
    config.load()
    return config


def _server_state_connections() -> None:
    import uvicorn
    from uvicorn.server import ServerState

    server = uvicorn.Server(_uvicorn_config())
    _is(server.server_state, ServerState)
    _is(server.server_state.connections, set)
    _require(server.should_exit is False, "has no should_exit False")


def _protocol_class() -> None:
    config = _uvicorn_config()
    _parameters(config.http_protocol_class, "config", "server_state", "app_state")


def _lifespan_state() -> None:
    import uvicorn

    config = _uvicorn_config()
    _is(config.lifespan_class(config).state, dict)
    _uses(uvicorn.Server._serve, "lifespan", "lifespan_class")
    _parameters(uvicorn.Server.startup, "sockets")


# --- Starlette, FastAPI -----------------------------------------------------------------------------------


def _cookie_parser() -> None:
    from starlette.requests import cookie_parser

    parsed = cookie_parser("a=1; dicomflow_session=x")
    _require(parsed == {"a": "1", "dicomflow_session": "x"}, f"parses a cookie header into {parsed}")


def _authorization_scheme_param() -> None:
    from fastapi.security.utils import get_authorization_scheme_param

    parsed = get_authorization_scheme_param("Bearer t")
    _require(parsed == ("Bearer", "t"), f"parses 'Bearer t' into {parsed}")


def _router_routes() -> None:
    from fastapi import FastAPI

    routes = FastAPI().router.routes
    _is(routes, list)  # the fast lane is inserted first


# --- SQLAlchemy -------------------------------------------------------------------------------------------


def _driver_connection() -> None:
    from sqlalchemy import create_engine

    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        _is(conn.connection.driver_connection, sqlite3.Connection)
        _is(dict(conn.get_execution_options()), dict)
    engine.dispose()


def _row_asdict() -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        row = conn.execute(text("SELECT 1 AS one")).one()
        _require(row._asdict() == {"one": 1}, f"gives {row._asdict()}")
    engine.dispose()


CANARIES = [
    Canary("pynetdicom", "DULServiceProvider._read_pdu_data", "dimse/_pdata.py", _dul_read_pdu_data),
    Canary("pynetdicom", "DULServiceProvider._decode_pdu", "dimse/_pdata.py", _dul_decode_pdu),
    Canary("pynetdicom", "DULServiceProvider._recv_pdu", "dimse/_pdata.py", _dul_recv_pdu),
    Canary("pynetdicom", "DULServiceProvider queues and state", "dimse/_pdata.py, _reactor.py", _dul_queues),
    Canary(
        "pynetdicom", "pynetdicom.dul.time, _run_loop_delay", "dimse/_reactor.py, _setup.py", _dul_idle_sleep
    ),
    Canary(
        "pynetdicom", "pynetdicom.association.time", "dimse/_reactor.py, _setup.py", _association_idle_sleep
    ),
    Canary("pynetdicom", "Association._accepted_cx", "dimse/_pdata.py", _association_accepted_cx),
    Canary("pynetdicom", "Association._sent_release", "dimse/_pdata.py", _association_sent_release),
    Canary(
        "pynetdicom", "Association._serve_request", "dimse/_scu.py", _association_serve_request, fenced=False
    ),
    Canary("pynetdicom", "DIMSEServiceProvider", "dimse/_pdata.py, _reactor.py", _dimse_provider),
    Canary(
        "pynetdicom",
        "pynetdicom.acse.negotiate_as_acceptor",
        "dimse/_setup.py",
        _negotiate_as_acceptor,
        fenced=False,
    ),
    Canary("pynetdicom", "pynetdicom._config", "dimse/_setup.py, _scu.py", _config_flags, fenced=False),
    Canary("pynetdicom", "AE._servers", "dimse/_receiver.py", _ae_servers, fenced=False),
    Canary("pydicom", "RawDataElement fields", "dicom/_header.py", _raw_data_element, fenced=False),
    Canary(
        "pydicom",
        "Dataset.is_little_endian, is_implicit_VR",
        "dicom/_header.py",
        _original_encoding,
        fenced=False,
    ),
    Canary("pydicom", "read_preamble, read_dataset", "dicom/_file_meta.py", _reader_parts, fenced=False),
    Canary(
        "pydicom",
        "write_file_meta_info, DicomFileLike",
        "dicom/_file_meta.py",
        _file_meta_writer,
        fenced=False,
    ),
    Canary(
        "uvicorn",
        "Server.server_state, ServerState.connections",
        "serve/_http.py",
        _server_state_connections,
    ),
    Canary("uvicorn", "Config.http_protocol_class", "serve/_http.py", _protocol_class),
    Canary("uvicorn", "Server.lifespan.state", "serve/_http.py", _lifespan_state),
    Canary("starlette", "starlette.requests.cookie_parser", "api/_guard.py", _cookie_parser, fenced=False),
    Canary(
        "fastapi",
        "get_authorization_scheme_param",
        "api/_guard.py, _fastlane.py",
        _authorization_scheme_param,
        fenced=False,
    ),
    Canary("starlette", "Router.routes", "api/_fastlane.py", _router_routes),
    Canary("SQLAlchemy", "Connection.connection.driver_connection", "index/_rows.py", _driver_connection),
    Canary("SQLAlchemy", "Row._asdict", "index/catalog.py, index/instances.py", _row_asdict, fenced=False),
]


UVICORN_CHECKED = {
    "uvicorn.Server.startup": _lifespan_state,
    "uvicorn.Server.should_exit": _server_state_connections,
    "uvicorn.Server.server_state": _server_state_connections,
    "uvicorn.server.ServerState.connections": _server_state_connections,
    "uvicorn.Server.lifespan": _lifespan_state,
    "uvicorn.lifespan.on.LifespanOn.state": _lifespan_state,
    "uvicorn.Config.http_protocol_class": _protocol_class,
    "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol"
    "(config=, server_state=, app_state=)": _protocol_class,
}
"""Each name of ``serve._http.UVICORN_PRIVATE`` and the check above that covers it."""


def test_every_uvicorn_internal_the_http_workers_use_is_checked_here() -> None:
    from dicomflow.serve._http import UVICORN_PRIVATE

    assert set(UVICORN_PRIVATE) == set(UVICORN_CHECKED), "serve/_http.py names another uvicorn internal"
    assert {c.check for c in CANARIES} >= set(UVICORN_CHECKED.values())


@pytest.mark.parametrize("canary", CANARIES, ids=[c.attribute for c in CANARIES])
def test_private_attribute_has_the_shape_we_rely_on(canary: Canary) -> None:
    try:
        canary.check()
    except (AssertionError, AttributeError, ImportError, TypeError, ValueError) as exc:
        meanwhile = (
            "DICOMFLOW_PERFORMANCE__FAST_PATHS=0 avoids it until the fast path is adapted"
            if canary.fenced
            else "it is used whatever performance.fast_paths says: adapt it before taking this version"
        )
        pytest.fail(
            f"{canary.distribution} {version(canary.distribution)} (pinned: {_pin(canary.distribution)}): "
            f"{canary.attribute}: {exc or type(exc).__name__}; {canary.used_by} relies on it; {meanwhile}",
            pytrace=False,
        )

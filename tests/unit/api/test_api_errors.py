"""Every dicomflow error, validation failure and stray exception gets the one error shape."""

from __future__ import annotations

import warnings

import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from dicomflow.api.errors import code_for_status, error_response, install_error_handlers
from dicomflow.errors import ERRORS_BY_CODE, AuthenticationRequired, DicomflowError

with warnings.catch_warnings():  # Starlette 1.x asks for httpx2 when the test client runs on httpx
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient


class Body(BaseModel):
    count: int


def make_app(error: Exception) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise")
    def raise_it() -> None:
        raise error

    @app.post("/body")
    def body(payload: Body) -> Body:
        return payload

    return app


@pytest.mark.parametrize("error_class", [cls for _, cls in sorted(ERRORS_BY_CODE.items())])
def test_each_dicomflow_error_keeps_its_code_and_status(error_class: type[DicomflowError]) -> None:
    error = error_class(f"{error_class.__name__} happened", {"uid": "1.2.3"})
    with TestClient(make_app(error), raise_server_exceptions=False) as client:
        response = client.get("/raise")
    assert response.status_code == error_class.http_status
    assert response.json() == {
        "error": {
            "code": error_class.code,
            "message": f"{error_class.__name__} happened",
            "details": {"uid": "1.2.3"},
        }
    }


def test_authentication_required_asks_for_a_bearer_token() -> None:
    with TestClient(make_app(AuthenticationRequired("who are you"))) as client:
        response = client.get("/raise")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_validation_errors_are_422_with_the_errors_listed() -> None:
    with TestClient(make_app(RuntimeError())) as client:
        response = client.post("/body", json={"count": "many"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation-error"
    assert error["details"]["errors"][0]["loc"] == ["body", "count"]


def test_unknown_routes_and_stray_exceptions() -> None:
    with TestClient(make_app(KeyError("private")), raise_server_exceptions=False) as client:
        missing, crashed = client.get("/nowhere"), client.get("/raise")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not-found")
    assert crashed.status_code == 500
    assert crashed.json() == {
        "error": {"code": "internal-error", "message": "internal server error", "details": {}}
    }


@pytest.mark.parametrize(
    ("status", "code"),
    [(404, "not-found"), (405, "method-not-allowed"), (418, "http-418"), (502, "internal-error")],
)
def test_code_for_status(status: int, code: str) -> None:
    assert code_for_status(status) == code


def test_error_response_shape() -> None:
    response = error_response(409, "already-exists", "taken")
    assert response.status_code == 409
    assert response.body == b'{"error":{"code":"already-exists","message":"taken","details":{}}}'

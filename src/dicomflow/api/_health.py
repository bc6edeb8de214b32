"""``GET /ready`` and ``GET /metrics`` (``GET /health`` is in the app factory: it needs nothing)."""

from __future__ import annotations

from fastapi import Response

from dicomflow.api._application import App
from dicomflow.usecases import health, metrics


def ready(app: App) -> dict[str, object]:
    """Answer 200 when every part the server needs answers (index, store; a broker when jobs use one),
    else 503 ``not-ready`` naming each part's answer in ``details``; needs no token."""
    return {"status": "ready", "checks": health.readiness(app)}


def metrics_page(app: App) -> Response:
    """The Prometheus text exposition: counters of every process of this server, gauges from the index."""
    body, content_type = metrics.scrape(app)
    return Response(body, media_type=content_type)

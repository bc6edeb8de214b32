"""The installed report types and their aliases."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dicomflow import schemas
from dicomflow.config import Settings
from dicomflow.pipelines import ReportTypes
from dicomflow.runtime import load_report_types_of

if TYPE_CHECKING:
    from dicomflow.runtime import Application

ReportTypeEntry = schemas.ReportType | schemas.ReportTypeAlias


def list_report_types(app: Application) -> list[ReportTypeEntry]:
    """Each report type (name, version, title, whether it needs review, its inputs), then each alias."""
    return _entries(app.registry)


def installed_report_types(settings: Settings) -> list[ReportTypeEntry]:
    """As :func:`list_report_types`, for a command without an application (it needs no index)."""
    return _entries(load_report_types_of(settings))


def _entries(registry: ReportTypes) -> list[ReportTypeEntry]:
    types: list[ReportTypeEntry] = []
    for name in registry.names():
        report_type = registry.get(name)
        types.append(
            schemas.ReportType(
                name=name,
                version=report_type.version,
                title=report_type.title,
                requires_qc=report_type.requires_qc,
                inputs={k: v.describe() for k, v in report_type.input_objects().items()},
            )
        )
    aliases = [schemas.ReportTypeAlias(alias=a, name=t) for a, t in sorted(registry.aliases.items())]
    return [*types, *aliases]

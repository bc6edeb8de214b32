"""Finding report types: the entry-point group ``dicomflow.report_types``, extra plugins named in the
settings (``module:Class`` or a ``.py`` file), and aliases (``icobrain_ms`` → ``ms_lesions``)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import sys
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from dicomflow.errors import ConfigError, UnknownReportType
from dicomflow.pipelines._report_type import ReportType

ENTRY_POINT_GROUP = "dicomflow.report_types"
LOGGER = logging.getLogger(__name__)


class ReportTypes:
    """The report types this installation knows, by name and alias."""

    def __init__(
        self,
        types: Iterable[type[ReportType]],
        aliases: Mapping[str, str] | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self._types: dict[str, type[ReportType]] = {}
        self._options = {name: dict(values) for name, values in (options or {}).items()}
        for report_type in types:
            self.add(report_type)
        self.aliases = dict(aliases or {})

    def add(self, report_type: type[ReportType]) -> None:
        """Register one more report type (a later one with the same name wins, with a warning)."""
        if not report_type.name:
            raise ConfigError(f"report type {report_type.__qualname__} has no name")
        if report_type.name in self._types and self._types[report_type.name] is not report_type:
            LOGGER.warning("report type %r is defined twice; using %s", report_type.name, report_type)
        if report_type.name in self._options:
            configured = {"options": {**report_type.options, **self._options[report_type.name]}}
            report_type = type(report_type.__name__, (report_type,), configured)
        self._types[report_type.name] = report_type

    def get(self, name: str) -> type[ReportType]:
        """The report type called ``name`` or aliased so.

        Raises
        ------
        UnknownReportType
            When neither a report type nor an alias has that name.
        """
        resolved = self.aliases.get(name, name)
        try:
            return self._types[resolved]
        except KeyError:
            raise UnknownReportType(f"unknown report type {name!r} (known: {self.describe()})") from None

    def describe(self) -> str:
        """Every name with its aliases: ``ct_volumetry, ms_lesions (alias icobrain_ms), nifti_export``."""
        aliases: dict[str, list[str]] = {}
        for alias, target in sorted(self.aliases.items()):
            aliases.setdefault(target, []).append(alias)
        named = [
            f"{name} (alias {', '.join(aliases[name])})" if name in aliases else name for name in self.names()
        ]
        return ", ".join(named) or "none"

    def names(self) -> list[str]:
        """Every report type name, sorted."""
        return sorted(self._types)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.aliases.get(name, name) in self._types


def load_report_types(
    plugins: Iterable[str] = (),
    aliases: Mapping[str, str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> ReportTypes:
    """Every installed report type plus ``plugins`` (``pkg.mod:Class``, ``pkg.mod``, ``file.py[:Class]``),
    each given its ``options`` by name."""
    registry = ReportTypes((), aliases, options)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            registry.add(entry.load())
        except Exception as exc:  # a broken third-party plugin must not stop the server
            LOGGER.error("cannot load report type %s from %s: %s", entry.name, entry.value, exc)
    for spec in plugins:
        for report_type in report_types_from(spec):
            registry.add(report_type)
    return registry


def report_types_from(spec: str) -> list[type[ReportType]]:
    """The report types named by one plugin spec; every ReportType subclass of a module without ``:Class``."""
    target, _, attribute = spec.partition(":") if not _is_windows_drive(spec) else (spec, "", "")
    module = _load_module(target)
    if attribute:
        found = getattr(module, attribute, None)
        if not (inspect.isclass(found) and issubclass(found, ReportType)):
            raise ConfigError(f"plugin {spec!r}: {attribute} is not a ReportType subclass")
        return [found]
    found_all = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, ReportType)
        and obj.name
        and obj.__module__ == module.__name__
    ]
    if not found_all:
        raise ConfigError(f"plugin {spec!r} defines no report type")
    return found_all


def _load_module(target: str) -> ModuleType:
    if target.endswith(".py"):
        path = Path(target).resolve()
        if not path.is_file():
            raise ConfigError(f"plugin file {path} does not exist")
        name = f"dicomflow_plugin_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot load plugin file {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # worker processes unpickle by module name
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(target)
    except ImportError as exc:
        raise ConfigError(f"cannot import plugin module {target!r}: {exc}") from exc


def _is_windows_drive(spec: str) -> bool:
    return len(spec) > 1 and spec[1] == ":"

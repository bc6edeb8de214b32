"""Inputs: which series of a study a report type takes, and the checks they must pass.

An input works as DicomNode's ``AbstractInput`` but holds no state: ``required_values`` pick the instances
that belong to it (an unanchored regex, an exact string, or a predicate), ``required_tags`` must then be
present and well-formed in every picked instance (a validity finding otherwise, not a silent skip), and
:meth:`Input.validate` adds the report type's own checks over the chosen series.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomflow.pipelines._grinders import DatasetsGrinder, Grinder, stacks_volume
from dicomflow.pipelines._series import SeriesData

ValueRule = str | re.Pattern[str] | Callable[[Any], bool]


class Input:
    """One named slot of a report type: a series (or, with ``many``, every matching series).

    Class attributes
    ----------------
    required_values
        Keyword (or tag int) → rule. An instance belongs to the input when every rule matches.
    required_tags
        Keywords (or tag ints) that must be present, non-empty and well-formed in the chosen series.
    grinder
        Turns the chosen series into what the processor receives (default: the datasets, sorted).
    many
        Take every matching series (a dict by SeriesInstanceUID) instead of one.
    optional
        A missing series is not a finding; the processor receives None (or an empty dict).
    """

    required_values: ClassVar[Mapping[str | int, ValueRule]] = {}
    required_tags: ClassVar[Sequence[str | int]] = ()
    grinder: ClassVar[Grinder] = DatasetsGrinder()
    many: ClassVar[bool] = False
    optional: ClassVar[bool] = False

    def accepts(self, header: Dataset) -> bool:
        """Whether one instance belongs to this input (its ``required_values`` match)."""
        return all(matches(rule, header.get(keyword(tag))) for tag, rule in self.required_values.items())

    @property
    def needs_volume(self) -> bool:
        """Whether the chosen series is stacked into one volume (the grinder says so)."""
        return stacks_volume(self.grinder)

    def choose(self, candidates: Sequence[SeriesData]) -> SeriesData:
        """One series among several that match: the highest SeriesNumber (a repeat), then the largest."""
        return max(candidates, key=lambda s: (s.series_number or 0, len(s.paths)))

    def validate(self, series: SeriesData) -> list[str]:
        """Problems with the chosen series that block processing, as sentences (none by default)."""
        return []

    def describe(self) -> str:
        """The match rule in words, for the finding when no series matches."""
        if not self.required_values:
            return "any series"
        return " and ".join(f"{keyword(tag)} {_describe(rule)}" for tag, rule in self.required_values.items())


def keyword(tag: str | int) -> str:
    """The pydicom keyword of a tag given as keyword or int."""
    if isinstance(tag, str):
        return tag
    name = keyword_for_tag(tag)
    if not name:
        raise ValueError(f"tag {tag:#010x} has no keyword in the data dictionary")
    return str(name)


def matches(rule: ValueRule, value: Any) -> bool:
    """Whether a DICOM value satisfies a rule; a missing or empty value never does (a predicate decides)."""
    if callable(rule) and not isinstance(rule, re.Pattern):
        return bool(rule(value))
    if value is None or value == "":
        return False
    text = "\\".join(str(v) for v in value) if isinstance(value, MultiValue | list | tuple) else str(value)
    if isinstance(rule, re.Pattern):
        return rule.search(text) is not None
    values = [str(v).strip() for v in value] if isinstance(value, MultiValue | list | tuple) else []
    return text.strip() == rule.strip() or rule.strip() in values


def _describe(rule: ValueRule) -> str:
    if isinstance(rule, re.Pattern):
        flags = "i" if rule.flags & re.IGNORECASE else ""
        return f"~ /{rule.pattern}/{flags}"
    if isinstance(rule, str):
        return f"= {rule!r}"
    return f"satisfies {getattr(rule, '__name__', 'a predicate')}"

"""Kaapana's AE-title routing: calling AE ``kp-<dataset>``, called AE ``kp-<project>``."""

from __future__ import annotations

PROJECT_AE_PREFIX = "kp-"
"""Kaapana's prefix, checked case-sensitively."""

_AE_TITLE_MAX = 16


def project_from_called_ae(called_ae: str, prefix: str = PROJECT_AE_PREFIX) -> str | None:
    """Return the project a called AE title names, as Kaapana reads (0012,0020).

    The value is split on ``;`` and only the first element is used; it names a project only when it
    starts with ``prefix`` (case-sensitive: ``KP-study1`` names none).

    Parameters
    ----------
    called_ae
        The called AE title, for example ``"kp-study1"`` or ``"kp-a;kp-b"``.
    prefix
        The project prefix.

    Returns
    -------
    str or None
        The project name (``"study1"``, ``"a"``), or ``None`` when the AE names no project. Whether that
        project exists is for the caller to check; Kaapana falls back to ``admin``, we to the routing
        string and the fallback group/project.
    """
    return _strip_prefix(called_ae.split(";", 1)[0], prefix)


def dataset_from_calling_ae(calling_ae: str, prefix: str = PROJECT_AE_PREFIX) -> str | None:
    """Return the dataset a calling AE title names, as Kaapana reads (0012,0010).

    Parameters
    ----------
    calling_ae
        The calling AE title, for example ``"kp-lung"``.
    prefix
        The dataset prefix (case-sensitive).

    Returns
    -------
    str or None
        The dataset name (``"lung"``), or ``None`` when the AE does not start with ``prefix``. Kaapana
        instead invents a dataset named after the arrival time (``25-01-31-14:03:22123456``) for every
        series from a sender without the prefix, littering the platform with one-off datasets; we
        deliberately assign no dataset.
    """
    return _strip_prefix(calling_ae, prefix)


def called_ae_for_project(project: str, prefix: str = PROJECT_AE_PREFIX) -> str | None:
    """Return the called AE title that addresses ``project``, if one can.

    Parameters
    ----------
    project
        The project name.
    prefix
        The project prefix.

    Returns
    -------
    str or None
        ``prefix + project``, or ``None`` when that is longer than the 16 characters of an AE title (a
        14-character project name with ``kp-`` is unreachable, which Kaapana does not tell its users) or
        holds a backslash or a control character.
    """
    ae_title = f"{prefix}{project}"
    printable = all(" " <= char <= "~" and char != "\\" for char in ae_title)
    return ae_title if project and printable and len(ae_title) <= _AE_TITLE_MAX else None


def _strip_prefix(ae_title: str, prefix: str) -> str | None:
    ae_title = ae_title.strip()
    if not ae_title.startswith(prefix):
        return None
    return ae_title[len(prefix) :] or None

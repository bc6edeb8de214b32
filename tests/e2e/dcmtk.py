"""DCMTK senders for the end-to-end tests (``storescu``, ``dcmsend``, ``echoscu``), run as subprocesses."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

TIMEOUT = 60


def storescu_config(folder: Path, sop_classes: Sequence[str], transfer_syntax: str) -> tuple[Path, str]:
    """A ``storescu -xf`` association profile proposing, for each SOP Class, only ``transfer_syntax``.

    Returns the config file and the profile name.
    """
    contexts = "\n".join(
        f"PresentationContext{i} = {sop_class}\\FileSyntax"
        for i, sop_class in enumerate(dict.fromkeys(sop_classes), start=1)
    )
    text = (
        "[[TransferSyntaxes]]\n[FileSyntax]\n"
        f"TransferSyntax1 = {transfer_syntax}\n\n"
        "[[PresentationContexts]]\n[FileContexts]\n"
        f"{contexts}\n\n"
        "[[Profiles]]\n[File]\nPresentationContexts = FileContexts\n"
    )
    path = folder / f"storescu-{transfer_syntax}.cfg"
    path.write_text(text)
    return path, "File"


def storescu(
    port: int,
    paths: Sequence[Path],
    *extra: str,
    called_ae: str = "DICOMFLOW",
    calling_ae: str = "STORESCU",
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``storescu`` of ``paths`` to 127.0.0.1:``port`` with options ``extra``."""
    return subprocess.run(
        ["storescu", "-aet", calling_ae, "-aec", called_ae, *extra, "127.0.0.1", str(port), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=check,
    )


def storescu_as_is(
    port: int, paths: Sequence[Path], sop_classes: Sequence[str], transfer_syntax: str, folder: Path
) -> subprocess.CompletedProcess[str]:
    """``storescu`` proposing nothing but the files' own ``transfer_syntax``, so nothing is converted."""
    config, profile = storescu_config(folder, sop_classes, transfer_syntax)
    return storescu(port, paths, "-xf", str(config), profile)


def dcmsend(port: int, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``dcmsend -v 127.0.0.1 <port> <args>``."""
    return subprocess.run(
        ["dcmsend", "-v", "127.0.0.1", str(port), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=check,
    )


def echoscu(port: int, called_ae: str = "DICOMFLOW", check: bool = True) -> subprocess.CompletedProcess[str]:
    """``echoscu`` (C-ECHO) to 127.0.0.1:``port``."""
    return subprocess.run(
        ["echoscu", "-aec", called_ae, "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=check,
    )

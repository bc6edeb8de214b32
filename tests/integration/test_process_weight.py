"""The receiving and HTTP processes stay light: the array, imaging and report libraries (numpy, SciPy,
highdicom, nibabel, ReportLab, Matplotlib, Pillow) are imported by job workers only.

Each check builds what a process of ``dicomflow serve`` builds, in a fresh interpreter, and lists the heavy
modules it finds in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from factories import server_env

HEAVY = ("numpy", "scipy", "highdicom", "nibabel", "reportlab", "matplotlib", "PIL")
"""Loaded only where pixels are decoded or reports made: in job workers."""

_BUILD = """
import json, socket, sys
{prelude}
from dicomflow.api import create_app
from dicomflow.config import Settings
from dicomflow.dimse import Receiver
from dicomflow.runtime import open_application

settings = Settings().with_overrides(data_dir=sys.argv[1], **{{"dimse.port": 0}})
application = open_application(settings)
app = create_app(application)
receiver = Receiver(application)
listening = socket.create_server(("127.0.0.1", 0))
listening.setblocking(False)
server = receiver.serve(listening)
server.shutdown()
application.close()
print(json.dumps({{"heavy": sorted(m for m in {heavy!r} if m in sys.modules),
                   "light": sorted(m for m in ("fastapi", "pydicom", "pynetdicom") if m in sys.modules)}}))
"""


def _build_in_fresh_interpreter(tmp_path: Path, prelude: str) -> dict[str, list[str]]:
    code = _BUILD.format(prelude=prelude, heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, list[str]] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_the_http_app_and_the_receiver_import_no_heavy_library_as_serve_starts_them(tmp_path: Path) -> None:
    prelude = (
        "from dicomflow.runtime import import_pydicom_without_pixel_libraries\n"
        "assert import_pydicom_without_pixel_libraries()"
    )
    found = _build_in_fresh_interpreter(tmp_path, prelude)
    assert found == {"heavy": [], "light": ["fastapi", "pydicom", "pynetdicom"]}


def test_without_the_start_up_of_serve_only_pydicom_brings_numpy_and_pillow(tmp_path: Path) -> None:
    found = _build_in_fresh_interpreter(tmp_path, "")
    assert found["heavy"] == ["PIL", "numpy"]  # pydicom imports both whenever they are installed


def test_the_volume_names_of_the_dicom_package_import_numpy_on_first_use() -> None:
    code = (
        "import sys; from dicomflow.runtime import import_pydicom_without_pixel_libraries as lean; lean(); "
        "import dicomflow.dicom; before = 'numpy' in sys.modules; "
        "from dicomflow.dicom import Volume, load_volume; import numpy; "
        "print(before, Volume.__module__, load_volume.__module__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["False", "dicomflow.dicom._volume", "dicomflow.dicom._volume"]


def test_pydicom_is_left_as_it_is_once_imported() -> None:
    import numpy  # noqa: F401  # as a test run has (the factories make pixel data)
    import pydicom  # noqa: F401

    from dicomflow.runtime import import_pydicom_without_pixel_libraries

    assert import_pydicom_without_pixel_libraries() is False
    assert sys.modules["numpy"] is not None


def test_the_newest_revision_is_the_head_of_the_alembic_scripts() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from dicomflow.index._db import _MIGRATIONS, NEWEST_REVISION

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [NEWEST_REVISION]


def test_an_index_at_the_newest_revision_is_opened_without_importing_alembic(tmp_path: Path) -> None:
    from dicomflow.index._db import NEWEST_REVISION

    code = (
        "import sys; from dicomflow.index import create_index_engine, migrate; "
        "from dicomflow.index._db import schema_revisions; "
        f"engine = create_index_engine('sqlite:///{tmp_path}/index.sqlite3'); "
        "before = schema_revisions(engine); migrate(engine); "
        "print(before, schema_revisions(engine), 'alembic' in sys.modules)"
    )
    run = [sys.executable, "-c", code]
    first = subprocess.run(run, capture_output=True, text=True, check=True, timeout=60).stdout
    again = subprocess.run(run, capture_output=True, text=True, check=True, timeout=60).stdout
    newest = f"['{NEWEST_REVISION}']"
    assert (first.split(), again.split()) == (["[]", newest, "True"], [newest, newest, "False"])

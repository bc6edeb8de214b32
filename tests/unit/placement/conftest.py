"""Headers for the placement tables: only the fields a row sets differ from a plain CT instance."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dicomflow.dicom import InstanceHeader

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
# UIDs without an embedded timestamp, so that timestamp rows see only the fields they set.
STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
SERIES_UID = "1.2.826.0.1.3680043.8.498.1.1"


@pytest.fixture
def make_header() -> Callable[..., InstanceHeader]:
    def make(**fields: Any) -> InstanceHeader:
        values: dict[str, Any] = {
            "sop_instance_uid": "1.2.826.0.1.3680043.8.498.1.1.1",
            "sop_class_uid": CT_IMAGE_STORAGE,
            "study_instance_uid": STUDY_UID,
            "series_instance_uid": SERIES_UID,
        }
        values.update(fields)
        return InstanceHeader(**values)

    return make

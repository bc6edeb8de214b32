# More of icometrix-sdk 0.0.9 against dicomflow, run in the icometrix virtualenv; prints one JSON object.
# Usage: probes.py pages | series PROJECT_ID PATIENT_ID STUDY_ID | empty-upload PROJECT_ID DIR
import json
import os
import sys

from icometrix_sdk import IcometrixApi
from icometrix_sdk.authentication import get_auth_method
from icometrix_sdk.models.upload_entity import StartUploadDto
from icometrix_sdk.utils.paginator import get_paginator
from icometrix_sdk.utils.requests_api_client import RequestsApiClient

api = IcometrixApi(RequestsApiClient(os.environ["API_HOST"], get_auth_method()))
api.uploads.polling_interval = 0.2
what = sys.argv[1]
if what == "pages":
    pages = list(get_paginator(api.projects.get_all, page_size=2))
    names = [p.name for page in pages for p in page.results]
    print(json.dumps({"pages": len(pages), "names": names, "me": api.profile.who_am_i().email}))
elif what == "series":
    study = api.studies.get_one(sys.argv[2], sys.argv[3], sys.argv[4])
    series = list(api.series.get_all_for_study(study.uri))
    print(json.dumps({"series": [s.model_dump(mode="json") for s in series], "modality": study.modality}))
elif what == "empty-upload":
    upload = api.uploads.upload_dicom_dir(
        sys.argv[2], sys.argv[3], StartUploadDto(icobrain_report_type="icobrain_ms")
    )
    upload = api.uploads.wait_for_data_import(upload.folder_uri)
    print(json.dumps({"errors": upload.errors, "status": upload.status}))

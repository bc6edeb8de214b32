"""The built-in report types, registered through ``dicomflow.report_types`` entry points like any plugin."""

from dicomflow.pipelines.builtin.ct_volumetry import CtVolumetry
from dicomflow.pipelines.builtin.ms_lesions import MsLesions
from dicomflow.pipelines.builtin.nifti_export import NiftiExport

__all__ = ["CtVolumetry", "MsLesions", "NiftiExport"]

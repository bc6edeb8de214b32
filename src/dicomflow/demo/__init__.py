"""Synthetic demo studies with known truth: a CT body phantom and an MR T1 + FLAIR study with lesions."""

from dicomflow.demo._ct import Phantom, make_ct_phantom
from dicomflow.demo._files import DemoKind, demo_file_count, write_demo_data
from dicomflow.demo._mr import LesionTruth, MsStudy, make_ms_study

__all__ = [
    "DemoKind",
    "LesionTruth",
    "MsStudy",
    "Phantom",
    "demo_file_count",
    "make_ct_phantom",
    "make_ms_study",
    "write_demo_data",
]

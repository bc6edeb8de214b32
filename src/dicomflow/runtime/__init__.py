"""Process start-up: the application object every adapter of one process shares."""

from dicomflow.runtime._application import Application, load_report_types_of, open_application

__all__ = ["Application", "load_report_types_of", "open_application"]

"""Process start-up: the application object every adapter of one process shares."""

from dicomflow.runtime._application import Application, open_application

__all__ = ["Application", "open_application"]

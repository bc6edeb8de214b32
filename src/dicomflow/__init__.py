"""dicomflow: receive, index, place and process medical images."""

__version__ = "0.1.0"

"""The icometrix-compatible API (``shared/specs/icometrix_api.md``), served at the root of the server so that
the unmodified ``icometrix-sdk`` runs against dicomflow."""

from dicomflow.api.icometrix._routes import router

__all__ = ["router"]

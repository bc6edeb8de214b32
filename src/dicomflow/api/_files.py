"""A file streamed from the blob store as a download (what ``FileResponse`` does for a local file)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO
from urllib.parse import quote

from fastapi.responses import StreamingResponse

CHUNK = 1 << 20


def file_response(stream: IO[bytes], size: int, media_type: str, filename: str) -> StreamingResponse:
    """Stream ``stream`` (closed at the end) as an attachment named ``filename``."""
    quoted = quote(filename)
    disposition = (
        f'attachment; filename="{filename}"'
        if quoted == filename
        else f"attachment; filename*=utf-8''{quoted}"
    )
    headers = {"Content-Length": str(size), "Content-Disposition": disposition}
    return StreamingResponse(_chunks(stream), media_type=media_type, headers=headers)


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    with stream:
        while block := stream.read(CHUNK):
            yield block

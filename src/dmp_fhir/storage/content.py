"""Document content too large to live inside a resource document: GridFS.

A 20 MB PDF is 27 MB of base64 — past MongoDB's 16 MB document limit, and a burden on every
scan of the Binary collection even below it. Content above ``inline_max`` bytes is stored once
in the ``content`` GridFS bucket (255 kB chunks); the Binary's stored document keeps the
resource without ``data`` plus ``_content = {"id", "size"}``. Smaller content stays inline: one
document read serves it, and most clinical documents (CDA, small PDFs) are well below the bar.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile

from .database import Database

BUCKET = "content"


class ContentStore:
    """Write-once blobs addressed by a server-chosen id (never by a client's)."""

    def __init__(self, database: Database) -> None:
        self.db = database.db
        self.bucket = AsyncGridFSBucket(database.db, bucket_name=BUCKET)

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    async def put(self, content_id: str, data: bytes, *, metadata: dict[str, Any] | None = None) -> None:
        await self.bucket.upload_from_stream_with_id(content_id, content_id, data, metadata=metadata or {})

    async def get(self, content_id: str) -> bytes:
        stream = await self.bucket.open_download_stream(content_id)
        return bytes(await stream.read())

    async def stream(self, content_id: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The content piece by piece: a 20 MB download never sits whole in memory."""
        source = await self.bucket.open_download_stream(content_id)
        while chunk := await source.read(chunk_size):
            yield bytes(chunk)

    async def delete(self, content_ids: Iterable[str]) -> int:
        """Remove blobs (absent ones are ignored: deletion is safe to repeat)."""
        removed = 0
        for content_id in content_ids:
            try:
                await self.bucket.delete(content_id)
                removed += 1
            except NoFile:
                # A crash may have left the file record gone and chunks behind: sweep them.
                await self.db[f"{BUCKET}.chunks"].delete_many({"files_id": content_id})
        return removed

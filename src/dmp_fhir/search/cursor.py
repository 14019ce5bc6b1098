"""Opaque paging cursors (keyset or offset), carried in the ``_cursor`` link parameter."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ..errors import BadRequest

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page starts: after (``forward``) or before a keyset position, or at an offset."""

    offset: int | None = None
    key: tuple[datetime, str] | None = None
    forward: bool = True

    def encode(self) -> str:
        if self.key is not None:
            moment, rid = self.key
            data: dict[str, Any] = {
                "k": [(moment - _EPOCH) // timedelta(milliseconds=1), rid],
                "d": "n" if self.forward else "p",
            }
        else:
            data = {"o": self.offset or 0}
        return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            data = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            if "k" in data:
                millis, rid = data["k"]
                if not isinstance(millis, int) or not isinstance(rid, str):
                    raise ValueError
                key = (_EPOCH + timedelta(milliseconds=millis), rid)
                return cls(key=key, forward=data.get("d", "n") == "n")
            offset = data["o"]
            if not isinstance(offset, int) or offset < 0:
                raise ValueError
            return cls(offset=offset)
        except (ValueError, KeyError, TypeError, OverflowError, orjson.JSONDecodeError):
            raise BadRequest("Invalid or expired paging cursor (_cursor).", code="value") from None

"""The stored resource JSON travels as one packed value, not as a BSON sub-document.

We never query inside ``resource`` (every search reads the flattened ``_s_*``/``_p_*`` fields
beside it), so the engine need not see its structure. FerretDB v1 decodes every document it
fetches field by field, and a resource's nested objects were half of that work: measured on the
embedded engine, 150 DocumentReferences fetched and sorted took 71 ms as sub-documents and 38 ms
packed; a read by ``_id`` 1.8 ms and 0.9 ms. On MongoDB it also spares both ends a nested walk.

A packed resource is BSON binary of the user-defined subtype 0x80 holding the UTF-8 JSON the
server would serve. Writers pack at the door (``pack``); the client's type registry unpacks on
every read (``TYPE_REGISTRY``), so the rest of the code only ever sees dicts, and documents
stored before packing (sub-documents) read the same. A resource that cannot be written as JSON
(none should exist) is stored as a sub-document, as before.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bson.binary import Binary
from bson.codec_options import TypeDecoder, TypeRegistry

PACKED_SUBTYPE = 0x80
FIELD = "resource"


def pack(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow copy of ``doc`` with its resource packed (the argument is not changed)."""
    out = dict(doc)
    resource = out.get(FIELD)
    if isinstance(resource, dict):
        try:
            text = json.dumps(resource, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            out[FIELD] = Binary(text.encode("utf-8"), PACKED_SUBTYPE)
        except (TypeError, ValueError):  # not JSON (or a lone surrogate): keep the sub-document
            pass
    return out


class _Unpack(TypeDecoder):
    """Binary of subtype 0x80 → the resource dict; any other binary is left alone."""

    bson_type = Binary

    def transform_bson(self, value: Any) -> Any:
        if value.subtype == PACKED_SUBTYPE:
            return json.loads(bytes(value))
        return value


#: Give it to every client that reads the server's collections (``Database`` does).
TYPE_REGISTRY = TypeRegistry([_Unpack()])

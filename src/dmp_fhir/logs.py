"""Structured logs: one JSON object per line, with no request bodies and no credentials.

Exception records keep the traceback's frames (file, line, function) but drop the exception
*message*: messages from parsers and validators can quote the input, i.e. patient data.
"""

from __future__ import annotations

import logging
import traceback
from datetime import UTC, datetime
from typing import Any

import orjson

#: Extra attributes that a log call may attach (``log.info(..., extra={...})``) and that the
#: formatter copies into the JSON object; anything else given as ``extra`` is ignored.
FIELDS = ("request_id", "method", "path", "params", "status", "duration_ms", "client", "event")


#: Loggers clamped to WARNING (see configure_logging).
QUIET_LIBRARIES = ("pymongo", "httpx", "httpcore", "urllib3", "jwt", "multipart", "python_multipart")


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...FIELDS, "exc_type", "exc_frames"}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, _, tb = record.exc_info
            out["exc_type"] = exc_type.__name__
            out["exc_frames"] = [
                f"{frame.filename}:{frame.lineno} {frame.name}" for frame in traceback.extract_tb(tb)
            ][-12:]
        return orjson.dumps(out, default=str).decode()


def configure_logging(level: str = "info", *, json: bool = True) -> None:
    """Root logging for the server process (uvicorn's own config is disabled by the CLI)."""
    handler = logging.StreamHandler()
    if json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Libraries whose debug logs quote what they carry (the driver: whole documents; HTTP
    # clients: headers, Authorization included) never log below WARNING, whatever the level.
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # uvicorn's access log prints the full request line, query string included: replaced by ours.
    logging.getLogger("uvicorn.access").disabled = True

"""Logging set-up, and the scrubber that keeps credentials out of every log line.

websockets logs request lines and every header at DEBUG, and any message may quote a URL: the
scrubber sits on the handlers, so it sees every record whatever its logger, and blanks query
parameters named like credentials, credential headers, bearer tokens and anything shaped like a
JWT.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar

import orjson

__all__ = [
    "Context",
    "JsonLines",
    "Scrubber",
    "configure",
    "connection_id",
    "redacting_logger",
    "scrub",
    "user_id",
]

REDACTED = "[redacted]"

_CREDENTIAL_NAME = (
    r"[\w.-]*(?:token|key|secret|passw(?:or)?d|auth|sig|jwt|session|cookie|credential)[\w.-]*"
)
_QUERY_PARAMETER = re.compile(rf"([?&;]{_CREDENTIAL_NAME}=)[^&;\s\"']*", re.IGNORECASE)
_HEADER_LINE = re.compile(
    rf"^(<|>) ((?:authorization|proxy-authorization|set-cookie|{_CREDENTIAL_NAME}|x-api-[\w-]+)"
    r": )(.*)$",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")


def scrub(text: str) -> str:
    """`text` with every credential it carries replaced by `[redacted]`."""
    text = _HEADER_LINE.sub(rf"\1 \2{REDACTED}", text)
    text = _QUERY_PARAMETER.sub(rf"\1{REDACTED}", text)
    text = _BEARER.sub(rf"\1 {REDACTED}", text)
    return _JWT.sub(REDACTED, text)


class Scrubber(logging.Filter):
    """Rewrites a record's message when it carries a credential (never drops the record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return True


def redacting_logger() -> logging.Logger:
    """websockets' server logger, scrubbed even where no handler of ours is installed."""
    logger = logging.getLogger("websockets.server")
    if not any(isinstance(f, Scrubber) for f in logger.filters):
        logger.addFilter(Scrubber())
    return logger


# The connection a log line is about: set in each connection's task, inherited by what it starts.
connection_id: ContextVar[str | None] = ContextVar("connection_id", default=None)
user_id: ContextVar[str | None] = ContextVar("user_id", default=None)

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "instance",
    "connection_id",
    "user_id",
}


class Context(logging.Filter):
    """Stamps every record with the instance and, where known, the connection and user."""

    def __init__(self, instance: str) -> None:
        super().__init__()
        self._instance = instance

    def filter(self, record: logging.LogRecord) -> bool:
        record.instance = self._instance
        record.connection_id = connection_id.get()
        record.user_id = user_id.get()
        return True


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context, and any `extra`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "instance": getattr(record, "instance", None),
        }
        for name in ("connection_id", "user_id"):
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                line[name] = value
        if record.exc_info:
            line["exception"] = record.exc_text or self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class Text(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(where)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = [getattr(record, n, None) for n in ("connection_id", "user_id")]
        record.where = " [" + " ".join(i for i in ids if i) + "]" if any(ids) else ""
        return super().format(record)


def configure(level: str, log_format: str = "auto", instance: str = "") -> None:
    """Logging to stderr: JSON lines when it is not a terminal (or `json`), text otherwise."""
    handler = logging.StreamHandler()
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    handler.setFormatter(JsonLines() if as_json else Text())
    handler.addFilter(Context(instance))
    handler.addFilter(Scrubber())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if level != "debug":
        # websockets logs every connection and HTTP response at INFO: too much at scale.
        logging.getLogger("websockets").setLevel(logging.WARNING)

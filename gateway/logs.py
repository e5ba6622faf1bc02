"""Logging set-up, and the scrubber that keeps credentials out of every log line.

websockets logs request lines and every header at DEBUG, and any message may quote a URL: the
scrubber sits on the handlers, so it sees every record whatever its logger, and blanks query
parameters named like credentials, credential headers, bearer tokens and anything shaped like a
JWT.
"""

from __future__ import annotations

import logging
import re

__all__ = ["Scrubber", "configure", "redacting_logger", "scrub"]

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


def configure(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, Scrubber) for f in handler.filters):
            handler.addFilter(Scrubber())
    if level != "debug":
        # websockets logs every connection and HTTP response at INFO: too much at scale.
        logging.getLogger("websockets").setLevel(logging.WARNING)

"""Logging set-up, and the websockets logger that never writes a credential."""

from __future__ import annotations

import logging

__all__ = ["configure", "redacting_logger"]

_SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


class _RedactCredentials(logging.Filter):
    """websockets logs every request header at DEBUG; blank the ones that carry secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(args, tuple)
            and len(args) == 2
            and record.msg == "< %s: %s"
            and str(args[0]).lower() in _SECRET_HEADERS
        ):
            record.args = (args[0], "[redacted]")
        return True


def redacting_logger() -> logging.Logger:
    logger = logging.getLogger("websockets.server")
    if not any(isinstance(f, _RedactCredentials) for f in logger.filters):
        logger.addFilter(_RedactCredentials())
    return logger


def configure(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if level != "debug":
        # websockets logs every connection and HTTP response at INFO: too much at scale.
        logging.getLogger("websockets").setLevel(logging.WARNING)

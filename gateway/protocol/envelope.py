"""What travels on the bus between instances: the envelope around a client event, and the
control message an envelope may carry.

An envelope is `<exclude>|<join>|<seq>|<frame>`:

- `exclude`: a user id whose connections must not receive the frame (a typist does not see
  their own indicator), or empty;
- `join`: control, only on a user's channel: a conversation id the user has just become a
  member of, which every instance applies (its connections of that user join the
  conversation's channel) *before* delivering the frame; or empty;
- `seq`: for a conversation's messages, the message's seq, so receivers deliver them in seq
  order without parsing the frame; or empty;
- `frame`: the client event's JSON, encoded once by the publisher and delivered unchanged.

The control part is never inside the client frame, and no one parses a channel name: the
subscriber knows what each channel it joined is for. Session revocations are published by the
caches library and have their schema there (`caches.models.Revocation`).
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

from caches.models import Revocation
from gateway.protocol.ids import parse_uuid

__all__ = ["Envelope", "Revocation", "pack", "unpack"]

_SEP = b"|"


class Envelope(NamedTuple):
    """One unpacked bus message (a named tuple: made for every message, so made cheaply)."""

    exclude: bytes
    """The excluded user's id as ASCII bytes (compared with a connection's own), or b""."""
    join: uuid.UUID | None
    seq: int | None
    frame: bytes


def pack(
    frame: bytes,
    *,
    exclude: uuid.UUID | None = None,
    join: uuid.UUID | None = None,
    seq: int | None = None,
) -> bytes:
    """The bus payload for `frame`."""
    head = (str(exclude).encode() if exclude else b"") + _SEP
    head += (str(join).encode() if join else b"") + _SEP
    head += (str(seq).encode() if seq is not None else b"") + _SEP
    return head + frame


def unpack(payload: bytes) -> Envelope:
    """Raises ValueError for a payload that is not an envelope."""
    first = payload.find(_SEP)
    second = payload.find(_SEP, first + 1)
    third = payload.find(_SEP, second + 1)
    if first < 0 or second < 0 or third < 0:
        raise ValueError("not an envelope")
    join = parse_uuid(payload[first + 1 : second].decode()) if second > first + 1 else None
    seq = int(payload[second + 1 : third]) if third > second + 1 else None
    return Envelope(payload[:first], join, seq, payload[third + 1 :])

"""One UUID parser: every entry point takes the same ids and refuses the same others."""

from __future__ import annotations

import uuid

import pytest

from gateway.protocol import ProtocolError, decode
from gateway.protocol.ids import parse_uuid, parse_uuids, uuid_texts

ID = uuid.UUID("6f1c0e9a-3b7d-4c2e-9a51-0d8e7f6a5b4c")
REFUSED = [
    "{6f1c0e9a-3b7d-4c2e-9a51-0d8e7f6a5b4c}",
    "urn:uuid:6f1c0e9a-3b7d-4c2e-9a51-0d8e7f6a5b4c",
    "6f1c0e9a3b7d4c2e9a510d8e7f6a5b4c",
    "6f1c0e9a-3b7d-4c2e-9a51-0d8e7f6a5b4c\n",
    "6f1c0e9a-3b7d-4c2e-9a51-0d8e7f6a5b4g",
    "",
]


def test_the_canonical_form_in_any_case_is_taken() -> None:
    assert parse_uuid(str(ID)) == ID
    assert parse_uuid(str(ID).upper()) == ID
    assert parse_uuids([str(ID), str(ID).upper()]) == [ID]
    assert uuid_texts([str(ID).upper(), str(ID)]) == (str(ID),)


@pytest.mark.parametrize("text", REFUSED)
def test_other_spellings_are_refused_everywhere(text: str) -> None:
    with pytest.raises(ValueError):
        parse_uuid(text)
    with pytest.raises(ValueError):
        uuid_texts([str(ID), text])
    with pytest.raises(ProtocolError):
        decode(f'{{"type":"typing.start","conversation_id":{text!r}}}'.replace("'", '"'))


@pytest.mark.parametrize("value", [None, 7, ["x"], ID])
def test_values_that_are_not_text_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        parse_uuid(value)


def test_a_text_seen_before_is_looked_up_and_the_memo_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from caches.memo import bounded_memo
    from gateway.protocol import ids

    monkeypatch.setattr(ids, "_parsed", bounded_memo(ids._canonical_uuid, 8))
    assert parse_uuid(str(ID)) is parse_uuid(str(ID))  # the second from the memo
    for _ in range(3):  # a refused text is never remembered: refused every time
        with pytest.raises(ValueError):
            parse_uuid(REFUSED[0])
    texts = [str(uuid.uuid4()) for _ in range(20)]
    first = [parse_uuid(text) for text in texts]
    assert first == [uuid.UUID(text) for text in texts]
    # Bounded: 20 texts through a memo of 8 forgot the first ones (parsed anew, a new object).
    assert parse_uuid(texts[0]) == first[0]
    assert parse_uuid(texts[0]) is not first[0]

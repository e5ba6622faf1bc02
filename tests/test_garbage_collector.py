"""A serving instance's collections walk what serving made, not what start-up made."""

from __future__ import annotations

import gc

from gateway.limits import settle_garbage_collector


def _tracked(obj: object) -> bool:
    return any(other is obj for other in gc.get_objects())


def test_start_up_objects_are_left_out_of_later_collections() -> None:
    made_at_start = ["kept for the process's life"]
    try:
        settle_garbage_collector()
        made_while_serving = ["a request's state"]
        assert gc.get_freeze_count() > 0
        assert not _tracked(made_at_start)  # no collection walks it again
        assert _tracked(made_while_serving)  # serving's garbage is still collected
    finally:
        gc.unfreeze()

"""A serving instance's collections walk what serving made, not what start-up made."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# In a process of its own: freezing is for a whole process's life, not the test runner's.
_SETTLING = textwrap.dedent(
    """
    import gc
    from gateway.limits import settle_garbage_collector

    def tracked(obj):
        return any(other is obj for other in gc.get_objects())

    made_at_start = ["kept for the process's life"]
    settle_garbage_collector()
    made_while_serving = ["a request's state"]
    assert gc.get_freeze_count() > 0
    assert not tracked(made_at_start), "a start-up object is still walked"
    assert tracked(made_while_serving), "serving's objects are no longer collected"
    """
)


def test_start_up_objects_are_left_out_of_later_collections() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _SETTLING], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-600:]

"""The root of every exception the gateway defines.

`except gateway.errors.Error` catches each of ours (a refused token, a bad setting, a refused
request, a failing store, a lost bus...) and nothing a library raised. This module imports
nothing, so every layer may derive from it, the pure protocol included.
"""

from __future__ import annotations

__all__ = ["Error"]


class Error(Exception):
    """Something the gateway itself refuses or reports; each layer's errors derive from it."""

"""Who may see whose presence: `--presence-visibility`.

`any`: every authenticated user may watch anyone (the spec's behaviour). `shared-conversation`:
only users who share a conversation with the watcher, or whom the application lets them see
(rows it writes to the store's `presence_grants`); everyone may see themselves. A refused id is
answered `forbidden` whether or not such a user exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from gateway.store import Store

__all__ = ["ANY", "SHARED_CONVERSATION", "PresenceVisibility"]

ANY = "any"
SHARED_CONVERSATION = "shared-conversation"


class PresenceVisibility:
    def __init__(self, mode: str, store: Store) -> None:
        self._open = mode == ANY
        self._store = store

    async def visible(self, watcher: uuid.UUID, targets: Collection[uuid.UUID]) -> set[uuid.UUID]:
        """Those of `targets` the watcher may see."""
        wanted = set(targets)
        if self._open:
            return wanted
        others = wanted - {watcher}
        allowed = await self._store.visible_users(watcher, others) if others else set()
        return allowed | (wanted & {watcher})

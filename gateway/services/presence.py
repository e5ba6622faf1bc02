"""Presence orchestration: leases through the caches' connection-aware layer, announcements,
grace ends, the sweep, and re-asserting state after Redis came back or lost its data.

Every transition a presence call returns is published once, on the user's presence channel;
every instance with a watcher of that user delivers it.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from caches import (
    CacheUnavailable,
    EpochMark,
    InstanceLiveness,
    PresenceCache,
    PresenceStatus,
    PresenceTransition,
    PresenceUpdate,
    SessionCache,
)
from gateway.bus.publisher import Publisher
from gateway.config import AuthSettings, PresenceSettings
from gateway.metrics import key
from gateway.protocol import events
from gateway.services.leases import LeaseSteps
from gateway.services.revocations import Revocations
from gateway.state import ClientState
from gateway.tasks import Spawn, detached

__all__ = ["PresenceService"]

log = logging.getLogger(__name__)

_TICK = 0.25
_EPOCH_CHECK = 1.0
"""Seconds between looks for the epoch mark: how soon data loss is noticed."""
_BEAT = 1.0
"""Seconds between renewals of the instance's liveness record (and looks at the others'), or a
quarter of its TTL when that is shorter."""


class PresenceService:
    def __init__(
        self,
        *,
        presence: PresenceCache,
        sessions: SessionCache,
        epoch: EpochMark,
        liveness: InstanceLiveness,
        publisher: Publisher,
        settings: PresenceSettings,
        auth: AuthSettings,
        budget: float,
        clients: Callable[[], Iterable[ClientState]],
        metrics: Counter[str],
        revocations: Revocations | None = None,
        spawn: Spawn = detached,
    ) -> None:
        """`revocations`: restored to Redis, and never outlived by a re-asserted session,
        when Redis lost its data."""
        self._presence = presence
        self._sessions = sessions
        self._epoch = epoch
        self._liveness = liveness
        self._publisher = publisher
        self._settings = settings
        self._auth = auth
        self._budget = budget
        self._clients = clients
        self._metrics = metrics
        self._revocations = revocations
        self._lease = settings.lease_ttl
        self._leases = LeaseSteps(
            presence=presence,
            liveness=liveness,
            lease=settings.lease_ttl,
            grace=settings.grace,
            spawn=spawn,
        )
        self._reasserting = asyncio.Lock()
        self._reasserts_asked = 0
        self._reasserts_covered = 0
        self._expiries: list[tuple[float, uuid.UUID]] = []
        self._next_sweep = 0.0
        self._next_epoch_check = 0.0
        self._next_beat = 0.0
        self._beat_interval = min(_BEAT, settings.instance_ttl / 4)
        self._last_beat: float | None = None
        self._beating_since = 0.0
        self._left = False

    # Announcements

    async def announce(self, update: PresenceUpdate) -> None:
        """Publish a transition (nothing for NONE) to the user's watchers everywhere."""
        if update.transition is PresenceTransition.NONE:
            return
        frame = events.presence(update.user_id, update.status, update.last_seen)
        self._metrics[key("presence_transitions", update.status.value)] += 1
        await self._publisher.presence(update.user_id, frame)

    async def announce_all(self, updates: Iterable[PresenceUpdate]) -> None:
        """Publish many users' transitions together: one pipelined round trip, not one each."""
        await asyncio.gather(*(self.announce(update) for update in updates))

    # One client's life

    async def attach(self, client: ClientState) -> None:
        """A connection authenticated: take its lease and extend its session (one round trip);
        announce when it is the user's first."""
        update, _ = await self._with_session(client, self._leases.renew(client), always=True)
        await self.announce(update)

    async def detach(self, client: ClientState, last_local: bool) -> None:
        """A connection ended: cut its lease to the grace and schedule the grace's end."""
        update = await self._leases.disconnect(client)
        await self.announce(update)
        if last_local:
            self._end_grace_later(update)

    def _end_grace_later(self, update: PresenceUpdate) -> None:
        """A user left in their grace: announce the offline step when it ends."""
        if update.next_check is not None:
            deadline = time.monotonic() + self._settings.grace
            heapq.heappush(self._expiries, (deadline, update.user_id))

    def session_ttl(self, client: ClientState) -> float:
        """How long the session may be kept alive for this client: `--session-ttl`, but never
        past its token's expiry (plus the leeway); 0 once that has passed."""
        left = client.expires_at + self._auth.token_leeway - time.time()
        return max(0.0, min(self._auth.session_ttl, left))

    async def renew(self, client: ClientState) -> bool:
        """Heartbeat: the lease, and the session when a quarter of its TTL has passed since
        this client last extended it (both in one pipelined round trip); False when the session
        no longer exists. The session is never extended past the token's expiry (the
        connection ends then, unless the client refreshed its token)."""
        update, alive = await self._with_session(client, self._leases.renew(client), always=False)
        if not alive:
            alive = await self._restored(client)
        if update.transition is PresenceTransition.WENT_ONLINE and await self._data_lost():
            # A live connection's heartbeat found its user offline because Redis lost its data
            # (not because its lease lapsed): watchers saw no change, so nothing is announced.
            return alive
        await self.announce(update)
        return alive

    async def _data_lost(self) -> bool:
        """Whether Redis lost what this instance wrote; if so, everything is re-asserted
        before this returns (once, whoever notices first)."""
        if await self._epoch.present():
            return False
        await self.reassert()
        return True

    async def _with_session(
        self, client: ClientState, step: Awaitable[PresenceUpdate], *, always: bool
    ) -> tuple[PresenceUpdate, bool]:
        """`step` (a lease change) and, in the same round trip, the session's extension: when
        `always`, else once a quarter of its TTL has passed since this client last extended it
        (most heartbeats renew the lease alone: a revoked session is closed by its revocation
        event, an expired token by its deadline). Never past the token's expiry. Whether the
        session still exists (True when it was not asked)."""
        ttl = self.session_ttl(client)
        now = time.monotonic()
        if ttl < 0.001 or not (always or now - client.session_extended_at >= ttl / 4):
            return await step, True
        client.session_extended_at = now
        extend = self._sessions.extend(client.session_id, ttl, user_id=client.user_id)
        update, alive = await asyncio.gather(step, extend)
        return update, alive

    async def _restored(self, client: ClientState) -> bool:
        """Whether a session found missing was lost with Redis's data rather than revoked.

        Lost (the epoch mark is gone: a restart without persistence): every local session and
        lease is restored, this one included, rather than end connections that did nothing
        wrong. Checked again once any restore in progress is over, since one may have put the
        session back after this heartbeat missed it."""
        async with self._reasserting:
            if not await self._epoch.present():
                await self._reassert()
                return True
            ttl = max(self.session_ttl(client), 0.001)
            return await self._sessions.extend(client.session_id, ttl, user_id=client.user_id)

    async def set_away(self, client: ClientState, away: bool) -> PresenceStatus:
        """Client-reported idle (`away`) or active; the user's resulting status."""
        client.away = away
        update = await self._presence.set_away(
            client.user_id, client.connection_id, away, self._lease
        )
        await self.announce(update)
        return update.status

    async def statuses(self, user_ids: Iterable[uuid.UUID]) -> dict[str, Any]:
        """Status and last seen of many users, one round trip, keyed by user id."""
        found = await self._presence.get_bulk_presence(list(user_ids))
        return {
            str(u): events.presence_entry(u, status, seen) for u, (status, seen) in found.items()
        }

    # The instance's state in Redis

    async def mark_epoch(self) -> bool:
        """Note that Redis holds what this instance wrote; True when the mark was missing
        (a fresh start, or Redis lost its data)."""
        return await self._epoch.claim()

    async def reassert(self) -> None:
        """Redis came back (the bus reconnected) or lost its data: every live connection takes
        its lease again. After data loss its session is restored too, and nothing is announced
        (watchers saw no change); otherwise real transitions (a lease that lapsed meanwhile)
        are announced as usual.

        Callers that arrive while a run is under way share the next one, which starts after
        them and so covers them: a burst (a failover moving many channels, each telling its
        clients) costs two runs, not one each."""
        self._reasserts_asked += 1
        asked = self._reasserts_asked
        async with self._reasserting:
            if self._reasserts_covered >= asked:
                return
            covers = self._reasserts_asked
            await self._reassert()
            self._reasserts_covered = covers

    async def _reassert(self) -> None:
        # The mark goes back last: until every session is restored, a heartbeat that misses
        # its session still finds the mark gone and waits for the restore.
        lost = not await self._epoch.present()
        clients = list(self._clients())
        if lost:
            restored = [c for c in clients if not self._revoked(c)]
            await asyncio.gather(
                *(
                    self._sessions.set(
                        c.session_id, c.session, max(self.session_ttl(c), 0.001), if_missing=True
                    )
                    for c in restored
                ),
                *([self._revocations.restore()] if self._revocations is not None else []),
            )
        updates = await self._leases.renew_now(clients)
        if lost:
            await self.mark_epoch()
        else:
            await self.announce_all(updates)
        log.info(
            "re-asserted %d presence leases%s",
            len(clients),
            " and sessions after Redis lost its data" if lost else "",
        )

    def _revoked(self, client: ClientState) -> bool:
        """A connection whose credential was revoked (its close is under way): its session is
        never put back."""
        revocations = self._revocations
        return (
            revocations is not None
            and revocations.refused(client.session_id, client.token_id) is not None
        )

    # Liveness: a dead instance's leases ended in seconds

    async def end_leftovers(self) -> None:
        """At start: end the leases a previous run of this instance id left behind when it
        died (restarted before its record lapsed, nobody else would)."""
        leases = await self._liveness.leftovers()
        if leases:
            await self._end_leases("its previous run", leases)

    async def join(self) -> None:
        """At start, before any client connects: this instance's first beat, so that the
        others know it from its first connection on (a crash before a first beat made on the
        maintenance tick left its users online for their whole client lease)."""
        now = time.monotonic()
        self._next_beat = now + self._beat_interval
        await self._keep_alive(now)

    async def leave(self) -> None:
        """After the drain: this instance holds no lease any more; its record goes."""
        self._left = True
        await self._liveness.leave()

    async def _keep_alive(self, now: float) -> None:
        """Renew this instance's liveness record; take its leases again if the record had
        lapsed (another instance may have ended them); end the leases of instances whose
        records lapsed. Only once this instance kept its own record for a whole TTL: after an
        outage of Redis every instance renews before any is taken for dead."""
        ttl = self._settings.instance_ttl
        renewed = await self._liveness.beat(ttl)
        last, self._last_beat = self._last_beat, now
        if last is None or now - last > 2 * self._beat_interval:
            self._beating_since = now
        if not renewed and last is not None:
            log.warning(
                "this instance's liveness record had lapsed: taking its leases again",
                extra={"event": "liveness_lapsed"},
            )
            await self.reassert()
        if now - self._beating_since < ttl + self._beat_interval:
            return
        others = await self._liveness.others()
        claims = await asyncio.gather(*(self._liveness.claim(other) for other in others))
        for other, leases in zip(others, claims, strict=True):
            if leases:
                await self._end_leases(f"instance {other}", leases)

    async def _end_leases(self, whose: str, leases: list[tuple[uuid.UUID, str]]) -> None:
        updates = await self._leases.end(leases)
        await self.announce_all(updates)
        for update in updates:
            self._end_grace_later(update)
        log.warning(
            "ended %d presence leases of %s, which stopped renewing its liveness record",
            len(leases),
            whose,
            extra={"event": "instance_lapsed"},
        )

    # Maintenance: grace ends and sweeps

    async def maintain(self) -> None:
        """Run until cancelled (the owner's task group)."""
        while True:
            await asyncio.sleep(_TICK)
            try:
                async with asyncio.timeout(self._budget):
                    await self._maintain_once(time.monotonic())
            except (CacheUnavailable, TimeoutError) as exc:
                log.warning("presence maintenance: Redis unavailable: %s", exc or "timeout")
            except Exception:  # the task's edge: log, keep maintaining
                log.exception("presence maintenance failed")

    async def _maintain_once(self, now: float) -> None:
        if now >= self._next_epoch_check:
            # Data lost with every connection still up (FLUSHALL, a failover to an empty
            # replica) reconnects nothing: only the mark's absence tells.
            self._next_epoch_check = now + _EPOCH_CHECK
            await self._data_lost()
        if now >= self._next_beat and not self._left:
            self._next_beat = now + self._beat_interval
            await self._keep_alive(now)
        due: set[uuid.UUID] = set()
        while self._expiries and self._expiries[0][0] <= now:
            due.add(heapq.heappop(self._expiries)[1])
        if due:
            await self.announce_all(await asyncio.gather(*(self._presence.expire(u) for u in due)))
        if now >= self._next_sweep:
            self._next_sweep = now + self._settings.sweep_interval
            await self._epoch.keep()
            await self.announce_all(await self._presence.sweep())

"""Admission: the caps that keep a flood of sockets from locking everyone else out.

Sockets waiting for their `auth` frame are capped for the instance and per client address (the
address the balancer saw, from `X-Forwarded-For`, believed only when the peer is a trusted
proxy); upgraded sockets, authenticating or not, per instance (`--max-connections`, exactly);
authenticated connections per user and per session. A refusal before the upgrade is an HTTP 503;
after it, close 1013; each is counted by reason and logged at most once per interval, never a
line per socket.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid
from collections import Counter
from typing import TypeVar

from websockets.datastructures import Headers

from gateway.config import LimitSettings
from gateway.metrics import key
from gateway.realtime.hub import Hub

__all__ = ["Admission", "TrustedProxies"]

log = logging.getLogger(__name__)

_LOG_INTERVAL = 10.0
_K = TypeVar("_K")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """Which peers' `X-Forwarded-For` is believed, and the client address it names."""

    def __init__(self, spec: str) -> None:
        self._networks: list[Network] = [
            ipaddress.ip_network(part.strip(), strict=False)
            for part in spec.split(",")
            if part.strip()
        ]

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def client_address(self, peer: str, headers: Headers) -> str:
        """The peer itself, unless it is a trusted proxy: then the nearest address in
        `X-Forwarded-For` that is not one (the client as the outermost trusted proxy saw it)."""
        if not self._networks or not self._trusted(peer):
            return peer
        hops = [h.strip() for v in headers.get_all("X-Forwarded-For") for h in v.split(",")]
        for hop in reversed([h for h in hops if h]):
            if not self._trusted(hop):
                return hop
        return hops[0] if hops else peer


class Admission:
    def __init__(
        self, limits: LimitSettings, metrics: Counter[str], hub: Hub, *, trusted_proxies: str = ""
    ) -> None:
        self._limits = limits
        self._metrics = metrics
        self._hub = hub
        self.proxies = TrustedProxies(trusted_proxies)
        self._pending: Counter[str] = Counter()
        self.pending = 0
        self.connections = 0
        """Upgraded sockets from `open` to `release`, whether authenticated yet or not."""
        self._unlogged: Counter[str] = Counter()
        self._logged_at = -_LOG_INTERVAL
        # Sockets that never authenticate may take half of what the instance holds, never all
        # of it: under a low open-files limit the room is small and the default cap is not.
        self._max_pending = min(limits.max_pending_auth, max(1, limits.max_connections // 2))
        if self._max_pending < limits.max_pending_auth:
            log.info(
                "--max-pending-auth lowered to %d: half of the %d connections this instance "
                "holds, keeping room for authenticated clients",
                self._max_pending,
                limits.max_connections,
            )

    def at_handshake(self, address: str, awaits_frame: bool = True) -> str | None:
        """Why a new socket from `address` is refused before its upgrade (None: go on).

        Only sockets that will wait for an `auth` frame count against the pending caps: one with
        a bearer header is authenticated at once and cannot be held open unauthenticated."""
        refused = self._over_instance_cap()
        if refused is None and awaits_frame:
            refused = self._over_pending_caps(address)
        return refused

    def open(self) -> str | None:
        """Count an upgraded socket against the instance's cap until its `release`; why it is
        refused instead. Sockets upgraded together all passed `at_handshake` before any of them
        was counted, so the cap is checked again here: it holds exactly."""
        refused = self._over_instance_cap()
        if refused is None:
            self.connections += 1
        return refused

    def release(self) -> None:
        self.connections -= 1

    def start_auth(self, address: str) -> str | None:
        """Count an upgraded socket as waiting for its `auth` frame; why it is refused instead
        (sockets that passed the handshake check together may overshoot the pending caps)."""
        refused = self._over_pending_caps(address)
        if refused is None:
            self._pending[address] += 1
            self.pending += 1
        return refused

    def end_auth(self, address: str) -> None:
        self.pending -= 1
        _decrement(self._pending, address)

    def admit(self, user_id: uuid.UUID, session_id: str) -> str | None:
        """Why an authenticated connection is refused (None: go on). The user's and the
        session's connections are the hub's (no second index to keep in memory): connections
        admitted together may overshoot a cap by how many attach at that moment."""
        limits = self._limits
        if self._hub.user_connections(user_id) >= limits.max_connections_per_user:
            return self._refuse("max_connections_per_user", "too many connections for this user")
        if self._hub.session_connections(session_id) >= limits.max_connections_per_session:
            return self._refuse(
                "max_connections_per_session", "too many connections for this session"
            )
        return None

    def _over_instance_cap(self) -> str | None:
        if self.connections >= self._limits.max_connections:
            return self._refuse("max_connections", "the instance is at its connection limit")
        return None

    def _over_pending_caps(self, address: str) -> str | None:
        limits = self._limits
        if self.pending >= self._max_pending:
            return self._refuse("max_pending_auth", "too many connections authenticating")
        if self._pending[address] >= limits.max_pending_auth_per_ip:
            return self._refuse(
                "max_pending_auth_per_ip", "too many connections authenticating from this address"
            )
        return None

    def _refuse(self, reason: str, message: str) -> str:
        self._metrics[key("refused", reason)] += 1
        self._unlogged[reason] += 1
        now = time.monotonic()
        if now - self._logged_at >= _LOG_INTERVAL:
            summary = ", ".join(f"{count} by {name}" for name, count in self._unlogged.items())
            log.warning("connections refused since the last report: %s", summary)
            self._unlogged.clear()
            self._logged_at = now
        return message


def _decrement(counter: Counter[_K], key: _K) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]

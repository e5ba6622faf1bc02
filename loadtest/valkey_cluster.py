"""A real Redis Cluster for tests and benchmarks: primaries and replicas made of the embedded
`valkey-server`, joined with `valkey-cli --cluster create`, started by PID on loopback and
stopped after.

A short `cluster-node-timeout` (1 s) so a killed primary's replica takes over within seconds.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from caches.redis import find_server_binary

__all__ = ["ValkeyCluster", "cli", "free_ports"]

NODE_TIMEOUT_MS = 1000


def cli() -> str:
    return str(Path(find_server_binary()).with_name("valkey-cli"))


def free_ports(count: int) -> list[int]:
    """`count` consecutive-free ports whose cluster bus ports (+10000) are free too."""
    for _ in range(200):
        base = random.randint(20000, 45000 - count)
        ports = list(range(base, base + count))
        try:
            for candidate in [*ports, *(p + 10000 for p in ports)]:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return ports
    raise AssertionError("no free ports for a cluster")


@dataclass
class ValkeyCluster:
    primaries: int = 3
    replicas: int = 1
    ports: list[int] = field(default_factory=list)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pg-cluster-")))
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:3])

    def start(self) -> ValkeyCluster:
        self.ports = free_ports(self.primaries * (1 + self.replicas))
        for port in self.ports:
            self._spawn(port)
        for port in self.ports:
            self._wait_ping(port)
        if self.primaries == 1 and not self.replicas:  # `--cluster create` wants three
            with self.admin(self.ports[0]) as admin:
                admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            self.wait_healthy()
            return self
        subprocess.run(
            [
                cli(),
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_healthy()
        self._wait_replicas_synced()
        return self

    def _wait_replicas_synced(self, timeout: float = 30) -> None:
        """A replica that never synced with its primary will not take over from it."""
        deadline = time.monotonic() + timeout
        replicas = [int(str(n["port"])) for n in self.nodes() if not n["primary"]]
        for port in replicas:
            while True:
                with self.admin(port) as admin:
                    info = admin.info("replication")
                if info.get("master_link_status") == "up":
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"replica {port} did not sync: {info}")
                time.sleep(0.05)

    def _spawn(self, port: int) -> None:
        node_dir = self.workdir / str(port)
        node_dir.mkdir(exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [
                find_server_binary(),
                "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir),
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def _wait_ping(self, port: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with SyncRedis(port=port, socket_timeout=1) as admin:
                    admin.ping()
                    return
            except RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def admin(self, port: int) -> SyncRedis:
        return SyncRedis(port=port, decode_responses=True, socket_timeout=2)

    def nodes(self) -> list[dict[str, object]]:
        """CLUSTER NODES as seen from a live node: port, role, slot count, failed."""
        for port in self.ports:
            if self.procs[port].poll() is not None:
                continue
            try:
                with self.admin(port) as admin:
                    text = admin.execute_command("CLUSTER", "NODES")
            except RedisError:
                continue
            found = []
            for line in str(text).splitlines():
                parts = line.split()
                flags = parts[2].split(",")
                found.append(
                    {
                        "port": int(parts[1].split(":")[1].split("@")[0]),
                        "primary": "master" in flags,
                        "failed": "fail" in flags or "fail?" in flags,
                        "slots": parts[8:],
                    }
                )
            return found
        raise AssertionError("no live cluster node")

    def primary_ports(self) -> list[int]:
        return [int(str(n["port"])) for n in self.nodes() if n["primary"] and n["slots"]]

    def wait_healthy(self, timeout: float = 30) -> None:
        """Every live node says cluster_state:ok and every slot has a live primary."""
        deadline = time.monotonic() + timeout
        while True:
            if self._healthy():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster did not become healthy: {self.nodes()}")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        for port in self.ports:
            if self.procs[port].poll() is not None:
                continue
            try:
                with self.admin(port) as admin:
                    info = admin.execute_command("CLUSTER", "INFO")
            except RedisError:
                return False
            if "cluster_state:ok" not in str(info):
                return False
        return True

    def wait_failover(self, port: int, timeout: float = 30) -> None:
        """Until a replica serves the slots the primary at `port` served, and all is well."""
        deadline = time.monotonic() + timeout
        while port in self.primary_ports() or not self._healthy():
            if time.monotonic() > deadline:
                raise AssertionError(f"no failover of {port}: {self.nodes()}")
            time.sleep(0.1)

    def node_id(self, port: int) -> str:
        with self.admin(port) as admin:
            return str(admin.execute_command("CLUSTER", "MYID"))

    def move_slot(self, slot: int, source: int, target: int) -> None:
        """Move one slot (and its keys) from the primary at `source` to the one at `target`,
        the way `valkey-cli --cluster reshard` does it, slot by slot."""
        source_id, target_id = self.node_id(source), self.node_id(target)
        with self.admin(target) as dst, self.admin(source) as src:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
            dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        for port in self.primary_ports():
            if port not in (source, target):
                with self.admin(port) as other:
                    other.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self.wait_healthy()

    def kill(self, port: int) -> None:
        proc = self.procs[port]
        proc.kill()
        proc.wait()

    def restart(self, port: int) -> None:
        """Start the node at `port` again after `kill`: it rejoins from its nodes.conf (as a
        replica once its slots failed over) and syncs."""
        self._spawn(port)
        self._wait_ping(port)
        self.wait_healthy()
        self._wait_replicas_synced()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ValkeyCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

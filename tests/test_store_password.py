"""The PostgreSQL password kept off the command line: `--store-password-file` (or libpq's
PGPASSFILE) against a server that asks for it (scram-sha-256), and never in the output."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from caches.redis import RedisClient
from gateway.store import StoreOpenError, open_store
from tests.gateways import client_for, gateways
from tests.postgres import PrivatePostgres, private_postgres

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "s3cret-Passw0rd"


@pytest.fixture(scope="module")
def guarded() -> Iterator[tuple[PrivatePostgres, str]]:
    """A private server where the role `gw` must give its password; the store URL of its
    database, without the password."""
    with private_postgres() as server:
        with psycopg.connect(server.url, autocommit=True) as admin:
            admin.execute(f"CREATE ROLE gw LOGIN PASSWORD '{PASSWORD}'")
            admin.execute("CREATE DATABASE chat OWNER gw")
            hba = Path(admin.execute("SHOW hba_file").fetchone()[0])  # type: ignore[index]
            # First match wins: `gw` is asked for its password, everyone else stays trusted.
            hba.write_text(f"host all gw 127.0.0.1/32 scram-sha-256\n{hba.read_text()}")
            admin.execute("SELECT pg_reload_conf()")
        yield server, f"postgresql://gw@127.0.0.1:{server.port}/chat"


async def test_without_its_password_the_store_is_refused_in_one_clear_line(
    guarded: tuple[PrivatePostgres, str],
) -> None:
    _, url = guarded
    with pytest.raises(StoreOpenError, match="cannot open the store postgresql://127.0.0.1"):
        await open_store(url)


async def test_a_password_file_opens_the_store(
    guarded: tuple[PrivatePostgres, str], tmp_path: Path
) -> None:
    _, url = guarded
    secret = tmp_path / "db-password"
    secret.write_text(PASSWORD + "\n")  # a trailing newline, as editors and `echo` leave
    store = await open_store(url, password_file=str(secret))
    try:
        conversation, created = await store.create_conversation(
            "direct", uuid.uuid4(), [uuid.uuid4()], ""
        )
        assert created and conversation.type == "direct"
    finally:
        await store.close()
    with pytest.raises(StoreOpenError, match="cannot read the store password file"):
        await open_store(url, password_file=str(tmp_path / "missing"))


async def test_libpq_passfile_opens_the_store(
    guarded: tuple[PrivatePostgres, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, url = guarded
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{server.port}:chat:gw:{PASSWORD}\n")
    passfile.chmod(0o600)  # libpq ignores a passfile others may read
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    store = await open_store(url)
    await store.close()


async def test_a_gateway_serves_with_its_password_in_a_file_and_never_shows_it(
    guarded: tuple[PrivatePostgres, str], redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    _, url = guarded
    secret = tmp_path / "db-password"
    secret.write_text(PASSWORD)
    with gateways(redis_url, tmp_path, 1, store=url, store_password_file=str(secret)) as (gw,):
        ann, bob = uuid.uuid4(), uuid.uuid4()
        a = await client_for(redis, gw, ann)
        created = await a.request("conversation.create", kind="direct", member_ids=[str(bob)])
        sent = await a.request(
            "message.send",
            conversation_id=created["conversation"]["id"],
            client_msg_id="m0",
            content="stored on PostgreSQL",
        )
        assert sent["message"]["seq"] == 1
        await a.ws.close()
        with open(f"/proc/{gw.pid}/cmdline", "rb") as cmdline:
            assert PASSWORD.encode() not in cmdline.read()
    for log in tmp_path.glob("*.log"):
        assert PASSWORD not in log.read_text()
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-it")
    refused = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", "0", "--store", url,
         "--store-password-file", str(wrong),
         "--jwt-secret", "store-test-secret-0123456789abcdef0123"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.startswith("presence-gateway: cannot open the store postgresql://")
    assert "not-it" not in refused.stderr + refused.stdout

"""One place picks the backend from the store URL; nothing outside `store/` names a backend."""

from __future__ import annotations

from pathlib import Path

from gateway.metrics import Latency
from gateway.store.base import Store, StoreOpenError
from gateway.store.sqlite import SqliteStore

__all__ = ["describe_store", "is_postgres", "open_store", "sqlite_path"]

_POSTGRES = ("postgresql://", "postgres://")
_SQLITE = "sqlite://"


def is_postgres(url: str) -> bool:
    return url.startswith(_POSTGRES)


def sqlite_path(url: str) -> str:
    """`sqlite:///relative.db` and `sqlite:////absolute.db` (the common URL form), or a path."""
    return url[len(_SQLITE) + 1 :] if url.startswith(_SQLITE) else url


async def open_store(
    url: str,
    latency: Latency | None = None,
    *,
    pool_size: int = 10,
    password_file: str = "",
    timeout: float = 2.0,
) -> Store:
    """The store at `url`, opened and migrated: a SQLite path (or `sqlite:///path`), or
    `postgresql://user@host:port/db` (`postgres://` too, with libpq options such as
    `sslmode`). The PostgreSQL password may come from `password_file` (or libpq's PGPASSFILE)
    rather than the URL.

    Raises:
        StoreOpenError: it cannot be opened; the message says which store and why.
    """
    if url.startswith(_POSTGRES):
        # Imported here: psycopg's import takes about 0.2 s, which a SQLite instance (and
        # every start of one) does not need to pay.
        from gateway.store.postgres import PostgresStore

        password = None
        if password_file:
            try:
                password = Path(password_file).read_text().strip()
            except OSError as exc:
                raise StoreOpenError(f"cannot read the store password file: {exc}") from None
        store = PostgresStore(
            url=url, latency=latency, pool_size=pool_size, password=password, timeout=timeout
        )
        return await store.open()
    return await SqliteStore(sqlite_path(url), latency).open()


def describe_store(url: str) -> str:
    """The store for logs: the path, or the URL without its password."""
    if not url.startswith(_POSTGRES):
        return sqlite_path(url)
    from gateway.store.postgres import safe_url

    return safe_url(url)

"""Configuration as an operator writes it: flags, environment variables and a TOML file, in that
order of precedence; a bad value or an unknown key stops start-up naming it; outside `--dev` a
JWT key is required."""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, Settings, add_arguments, load

ROOT = Path(__file__).resolve().parent.parent


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_beat_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    file = tmp_path / "gateway.toml"
    file.write_text(
        'heartbeat-interval = 7\nlease_ttl = 30\ncompression = true\nlog_level = "warning"\n'
    )
    settings = load(
        _args("--config", str(file), "--lease-ttl", "40"),
        env={"GATEWAY_LOG_LEVEL": "error"},
    )
    assert settings.presence.heartbeat_interval == 7.0  # the file
    assert settings.presence.lease_ttl == 40.0  # the flag over the file
    assert settings.observability.log_level == "error"  # the environment over the file
    assert settings.http.compression is True
    assert load(_args("--dev"), env={}).auth.dev is True  # a switch may stand alone


def test_a_file_may_group_settings_in_their_sections(tmp_path: Path) -> None:
    file = tmp_path / "gateway.toml"
    file.write_text(
        'store = "chat.sqlite3"\n'
        '[redis]\nurl = "redis://127.0.0.1:6390/0"\ntimeout = 1.5\n'
        "[limits]\nmax_connections = 900\n[presence]\nlease-ttl = 45\n"
    )
    settings = load(_args("--config", str(file)), env={})
    assert settings.store.url == "chat.sqlite3"
    assert (settings.redis.url, settings.redis.timeout) == ("redis://127.0.0.1:6390/0", 1.5)
    assert settings.limits.max_connections == 900
    assert settings.presence.lease_ttl == 45.0


def test_sections_are_frozen_and_changed_by_flat_name() -> None:
    settings = Settings.flat(lease_ttl=30.0, store="x.sqlite3")
    assert (settings.presence.lease_ttl, settings.store.url) == (30.0, "x.sqlite3")
    changed = settings.replaced(max_connections=5)
    assert changed.limits.max_connections == 5 and settings.limits.max_connections == 50_000
    assert changed.presence is settings.presence  # untouched sections are shared
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.limits.max_connections = 1  # type: ignore[misc]
    with pytest.raises(TypeError, match="unknown setting"):
        settings.replaced(lease=1)


def test_help_lists_every_flag_under_its_section() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    text = parser.format_help()
    assert "redis settings:" in text and "--redis-url" in text and "--store-pool-size" in text
    assert text.index("limits settings:") < text.index("\n  --max-connections ")


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("heartbeat_interval = 'soon'\n", "--heartbeat-interval"),
        ("no_such_setting = 1\n", "unknown setting 'no_such_setting'"),
        ("port = [1, 2]\n", "port must be a single value"),
        ("port = \n", "is not TOML"),
        ("lease_ttl = 0\n", "--lease-ttl"),
    ],
)
def test_a_bad_file_names_the_file_and_the_setting(
    tmp_path: Path, content: str, named: str
) -> None:
    file = tmp_path / "gateway.toml"
    file.write_text(content)
    with pytest.raises(ConfigError, match=named.replace("[", r"\[")):
        load(_args("--config", str(file)), env={})


def _serve(tmp_path: Path, *argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", "0", *argv],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )


def test_serve_without_a_jwt_key_refuses_to_start_unless_dev(
    tmp_path: Path, redis_url: str
) -> None:
    refused = _serve(tmp_path, "--redis-url", redis_url)
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 2
    assert b"no JWT key: set --jwt-secret-file" in err and b"--dev" in err
    dev = _serve(tmp_path, "--redis-url", redis_url, "--dev", "--store", "dev.sqlite3")
    try:
        assert dev.stdout is not None and b"listening on" in dev.stdout.readline()
    finally:
        dev.terminate()
        _, err = dev.communicate(timeout=30)
    assert b"presence-gateway token --user" in err  # how to mint a token


def test_the_manual_lists_every_flag_once() -> None:
    manual = (ROOT / "docs" / "configuration.md").read_text()
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = set(re.findall(r"^  (--[a-z-]+) \[?[A-Z_]+", parser.format_help(), re.M))
    assert len(flags) > 50
    for flag in flags:
        assert manual.count(f"| `{flag}` |") == 1, flag

"""The dependency rules of docs/architecture.md, checked on the source: no import cycle in
`gateway/` (runtime or TYPE_CHECKING), nothing imports the composition root, a pure protocol,
handlers that never touch a socket, caches that never import the gateway."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(package: str) -> dict[str, set[str]]:
    """Every module of `package` and the modules it imports, at any depth of its code."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        name = _module_name(path)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                # `from gateway.protocol import events` imports the submodule too.
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = found
    return graph


def _internal(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {i for i in deps if i in graph and i != m} for m, deps in graph.items()}


def test_no_import_cycle_in_the_gateway() -> None:
    graph = _internal(_imports("gateway"))
    # A package's __init__ re-exports its modules; an edge into the package is an edge into
    # them, so cycles through re-exports are found too.
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep) :] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_only_the_serve_command_imports_the_composition_root() -> None:
    importers = {m for m, deps in _imports("gateway").items() if "gateway.app" in deps}
    assert importers == {"gateway.__main__"}


def test_protocol_is_pure() -> None:
    graph = _imports("gateway")
    io = ("asyncio", "redis", "websockets", "socket", "sqlite3", "gateway.")
    for module, deps in graph.items():
        if module.startswith("gateway.protocol"):
            outside = {
                d
                for d in deps
                if d.startswith(io) and not d.startswith(("gateway.protocol", "gateway.errors"))
            }
            assert not outside, f"{module} imports {outside}"


def test_handlers_and_services_never_touch_a_socket() -> None:
    for module, deps in _imports("gateway").items():
        if module.startswith(("gateway.handlers", "gateway.services")):
            sockets = {d for d in deps if d.startswith(("websockets", "gateway.realtime"))}
            assert not sockets, f"{module} imports {sockets}"


def test_handlers_and_services_import_nothing_of_redis() -> None:
    """They handle `caches.CacheUnavailable`: the caches and the bus own the Redis client, so a
    cluster backend or another client library changes nothing above them."""
    for module, deps in _imports("gateway").items():
        if module.startswith(("gateway.handlers", "gateway.services")):
            redis = {d for d in deps if d == "redis" or d.startswith(("redis.", "caches.redis"))}
            assert not redis, f"{module} imports {redis}"


def test_realtime_never_touches_redis_or_the_store_directly() -> None:
    for module, deps in _imports("gateway").items():
        if module.startswith("gateway.realtime"):
            direct = {
                d
                for d in deps
                if d.startswith(("redis", "caches.presence", "caches.session", "sqlite3"))
                or d.startswith("gateway.store.sqlite")
            }
            assert not direct, f"{module} imports {direct}"


def test_caches_import_nothing_of_the_gateway() -> None:
    for module, deps in _imports("caches").items():
        assert not {d for d in deps if d.startswith("gateway")}, module


def test_only_the_bus_turns_a_topic_into_a_channel_or_an_envelope() -> None:
    """Services say what happened to the publisher; the bus (and the hub's subscriptions) alone
    spell channels and pack envelopes, so a backend can route by topic."""
    spelled = re.compile(r"keys\.(conversation|user|presence)_channel\(|envelope\.pack\(")
    allowed = {ROOT / "gateway" / "realtime" / "hub.py"}
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "gateway").rglob("*.py"))
        if "bus" not in path.relative_to(ROOT).parts
        and path not in allowed
        and spelled.search(path.read_text())
    ]
    assert offenders == []


def test_every_exception_of_the_gateway_has_one_root() -> None:
    """`except gateway.errors.Error` catches everything the gateway itself raises."""
    defined = re.compile(r"^class (\w+)\((Exception|BaseException)\)", re.MULTILINE)
    roots = {
        f"{path.relative_to(ROOT)}:{match.group(1)}"
        for path in sorted((ROOT / "gateway").rglob("*.py"))
        for match in defined.finditer(path.read_text())
    }
    assert roots == {"gateway/errors.py:Error"}


def test_constructors_of_more_than_four_parameters_are_keyword_only() -> None:
    """Wiring many parts by position is where two of the same type get swapped unnoticed."""
    offenders = []
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        positional = item.args.args[1:]
                        if len(positional) + len(item.args.kwonlyargs) > 4 and len(positional) > 0:
                            offenders.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert offenders == []


# The private parts of libraries the gateway keeps, each measured, checked by
# tests/test_library_contracts.py and pinned below the next minor release.
_PRIVATE_REACHES = {
    "gateway/replies.py": {"redis._parsers.base", "_reader", "_writer"},
}


def test_libraries_are_used_through_their_public_apis_except_where_measured() -> None:
    """No `__class__` swapped, no private module imported, no private attribute of another
    object read, but in the modules listed above (and only what they list)."""
    for path in sorted((ROOT / "gateway").rglob("*.py")) + sorted((ROOT / "caches").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        allowed = _PRIVATE_REACHES.get(name, set())
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                ours = node.module.split(".")[0] in ("caches", "gateway", "__future__")
                private = [p for p in node.module.split(".") if p.startswith("_")]
                if private and not ours:
                    assert node.module in allowed, f"{name} imports {node.module}"
            if isinstance(node, ast.Attribute) and node.attr == "__class__":
                assert not isinstance(node.ctx, ast.Store), f"{name} swaps a __class__"
            if isinstance(node, ast.Constant) and node.value in ("_reader", "_writer"):
                assert node.value in allowed, f"{name} reads a connection's {node.value}"

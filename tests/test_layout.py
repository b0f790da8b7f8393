"""How the integration's modules depend on each other (read from their sources).

Protocol code (the llama-server and Wyoming clients, the slot manager, the server
checks, the TTS text filter) imports nothing from entity modules and nothing from
Home Assistant; no import cycles; no module over about 400 lines; no module-level state.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

COMPONENT = Path(__file__).parent.parent / "custom_components" / "local_voice"
MODULES = {
    ".".join(path.relative_to(COMPONENT).with_suffix("").parts): path
    for path in sorted(COMPONENT.rglob("*.py"))
}
PROTOCOL = {
    name
    for name in MODULES
    if name.startswith(("llama_server.", "wyoming_client."))
    or name in ("slots", "server_checks", "tts_input")
}
# What protocol modules may import of the integration besides each other.
SHARED = {"const"}


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """Override the suite's Home Assistant set-up: nothing here needs it."""


def _module_name(name: str) -> str:
    return name.removesuffix(".__init__")


def _imports(name: str) -> tuple[set[str], set[str]]:
    """Return (modules of the integration, other top-level packages) a module imports.

    Imports only made for type checking are left out: they do not run.
    """
    tree = ast.parse(MODULES[name].read_text())
    package = _module_name(name).split(".")[:-1] if "." in name else []
    if name.endswith("__init__"):
        package = name.split(".")[:-1]
    own: set[str] = set()
    other: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for child in ast.walk(node):
            if isinstance(child, ast.ImportFrom) and child.level:
                base = package[: len(package) - child.level + 1]
                target = ".".join([*base, child.module] if child.module else base)
                names = [f"{target}.{alias.name}" for alias in child.names]
                own |= {n for n in names if n in MODULES or f"{n}.__init__" in MODULES}
                own.add(target)
            elif isinstance(child, ast.ImportFrom) and child.module:
                other.add(child.module.split(".")[0])
            elif isinstance(child, ast.Import):
                other |= {alias.name.split(".")[0] for alias in child.names}
    return {n for n in own if n in MODULES} - {name}, other


def test_protocol_modules_stand_alone() -> None:
    """No entity module and no Home Assistant in the protocol code."""
    assert {"llama_server.client", "wyoming_client.connection", "slots"} <= PROTOCOL
    for name in PROTOCOL:
        own, other = _imports(name)
        assert own <= PROTOCOL | SHARED, (name, own - PROTOCOL - SHARED)
        assert "homeassistant" not in other, name


def test_no_import_cycles() -> None:
    """Following the imports from any module never leads back to it."""
    graph = {name: _imports(name)[0] for name in MODULES}
    assert {"slots", "llama_server.client", "const"} <= graph["coordinator"]
    assert "llama_server.errors" in graph["llama_server.client"]

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                if reaches(nxt, goal, seen):
                    return True
        return False

    assert not [name for name in graph if reaches(name, name, set())]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_short(name: str) -> None:
    """A module that grows past about 400 lines holds more than one thing."""
    assert len(MODULES[name].read_text().splitlines()) <= 400


def test_no_module_level_state() -> None:
    """Runtime state lives in the entry's runtime data, not in module globals."""
    stateful = {"WeakKeyDictionary", "WeakValueDictionary", "deque", "defaultdict"}
    for name, path in MODULES.items():
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
                continue
            value = node.value
            empty = isinstance(value, ast.Dict | ast.List | ast.Set) and not (
                value.keys if isinstance(value, ast.Dict) else value.elts
            )
            called = (
                isinstance(value, ast.Call)
                and ast.unparse(value.func).split(".")[-1] in stateful
            )
            assert not (empty or called), f"{name}: {ast.unparse(node)}"

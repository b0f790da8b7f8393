"""How the project's modules depend on each other (read from their sources).

Protocol code (the llama-server and Wyoming clients, the slot manager, the server
checks) imports nothing from Home Assistant, not even through another module; no
import cycles anywhere (the integration, benchmarks, scripts and tests); no module
over about 400 lines and no function over 60 in the integration; no module-level
state.

Every import counts, also one made inside a function or only for type checking:
the modules still depend on each other. A package's `__init__` is left out as an
import's target: it runs whenever one of its modules is imported, so counting it
would make every package a cycle.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
COMPONENT = ROOT / "custom_components" / "local_voice"
PREFIX = "custom_components.local_voice."
#: Every module of the repository's code, by dotted name from the repository root.
REPO = {
    ".".join(path.relative_to(ROOT).with_suffix("").parts): path
    for folder in ("custom_components", "benchmarks", "scripts", "tests")
    for path in sorted((ROOT / folder).rglob("*.py"))
}
#: The integration's modules, by name within it ("llama_server.client").
MODULES = {
    name.removeprefix(PREFIX): path
    for name, path in REPO.items()
    if name.startswith(PREFIX)
}
PROTOCOL = {
    name
    for name in MODULES
    if name.startswith(("llama_server.", "wyoming_client."))
    or name in ("slots", "server_checks")
}
#: The longest a function in the integration may be.
MAX_FUNCTION_LINES = 60


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """Override the suite's Home Assistant set-up: nothing here needs it."""


@cache
def _imports(name: str) -> tuple[frozenset[str], frozenset[str]]:
    """Return (modules of the repository, other top-level packages) a module imports.

    A top-level name that is no module of the repository is looked for beside the
    importer too: benchmarks and scripts run with their own folder on `sys.path`.
    """
    package = name.split(".")[:-1]
    own: set[str] = set()
    other: set[str] = set()

    def resolve(target: str) -> str | None:
        for candidate in (target, ".".join([*package, target])):
            if candidate in REPO:
                return candidate
        return None

    for node in ast.walk(ast.parse(REPO[name].read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            targets = [target, *(f"{target}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        found = {module for t in targets if (module := resolve(t))}
        own |= found
        if not found and not (isinstance(node, ast.ImportFrom) and node.level):
            other.add(targets[0].split(".")[0])
    return frozenset(own - {name}), frozenset(other)


def _chains(start: str) -> dict[str, list[str]]:
    """Return every module `start` leads to, each with a chain of imports to it."""
    chains = {start: [start]}
    queue = [start]
    while queue:
        name = queue.pop(0)
        for nxt in sorted(_imports(name)[0] - chains.keys()):
            chains[nxt] = [*chains[name], nxt]
            queue.append(nxt)
    return chains


def test_protocol_modules_stand_alone() -> None:
    """No Home Assistant in the protocol code, directly or through any module."""
    assert {"llama_server.client", "wyoming_client.sentences", "slots"} <= PROTOCOL
    assert "homeassistant" in _imports(PREFIX + "const")[1]  # the check can see it
    for name in sorted(PROTOCOL):
        for module, chain in _chains(PREFIX + name).items():
            assert "homeassistant" not in _imports(module)[1], (
                f"{' -> '.join(chain)} imports homeassistant"
            )


def test_no_import_cycles() -> None:
    """Following the imports from any module never leads back to it."""
    assert "benchmarks.prompt_cache" in _imports("benchmarks.prompt_cache_day")[0]
    assert PREFIX + "const" in _imports("scripts.develop")[0]
    assert PREFIX + "wyoming_client.errors" in _imports(PREFIX + "stt")[0]
    cycles = {
        frozenset(chain): [*chain, name]
        for name in REPO
        for module, chain in _chains(name).items()
        if name in _imports(module)[0]
    }
    assert not cycles, "\n".join(" -> ".join(chain) for chain in cycles.values())


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_short(name: str) -> None:
    """A module that grows past about 400 lines holds more than one thing."""
    assert len(MODULES[name].read_text().splitlines()) <= 400


def _functions(
    name: str, body: list[ast.stmt], outer: str = ""
) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """Return a module's functions and methods, nested ones too, by dotted name."""
    found: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            qualified = f"{outer or name}.{node.name}"
            if not isinstance(node, ast.ClassDef):
                found[qualified] = node
            found |= _functions(name, node.body, qualified)
    return found


def test_functions_are_short() -> None:
    """A function over 60 lines does several things: it reads better as its steps."""
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    for name, path in MODULES.items():
        functions |= _functions(name, ast.parse(path.read_text()).body)
    assert "wyoming_client.transcription.async_transcribe" in functions
    long = {
        name
        for name, node in functions.items()
        if (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_FUNCTION_LINES
    }
    assert long == set(), "split these into their steps"


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

"""Paths of the add-on repository and helpers to load its Python code in tests."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
import shutil
import sys
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ADDONS = ROOT / "addons"
SLUGS = ("llama_server", "whisper_cpp", "kokoro")
LIB = Path("rootfs/usr/local/lib/local_voice")
# The add-on linter's schemas: beside the checkout on these machines and in CI.
LINT_DIR = ROOT.parent / "shared" / "addon-lint"
# Module names the add-ons share (one copy each): dropped from sys.modules before an
# add-on's code is imported, so that every test runs that add-on's own copy.
_ADDON_MODULES = ("fetch_model", "launcher", "wyoming_kokoro")

CI = os.environ.get("CI", "").lower() == "true"


def lib_dir(slug: str) -> Path:
    """Return the folder holding an add-on's Python code (in its image: same path)."""
    return ADDONS / slug / LIB


def command_argv(slug: str, module: str, options: Path, *args: str) -> list[str]:
    """Return the add-on's start-up code as its s6 service runs it, on `options`."""
    script = lib_dir(slug) / f"{module}.py"
    return [sys.executable, str(script), "--options", str(options), *args]


def load_module(slug: str, name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import module `name` of add-on `slug`, with that add-on's own shared modules."""
    monkeypatch.syspath_prepend(str(lib_dir(slug)))
    for module in list(sys.modules):
        if module == name or module.split(".")[0] in _ADDON_MODULES:
            monkeypatch.delitem(sys.modules, module)
    module = importlib.import_module(name)
    assert Path(module.__file__ or "").is_relative_to(lib_dir(slug))
    return module


def config(slug: str) -> dict[str, Any]:
    """Return an add-on's config.yaml."""
    return yaml.safe_load((ADDONS / slug / "config.yaml").read_text(encoding="utf-8"))


def default_options(slug: str, **changes: Any) -> dict[str, Any]:
    """Return the options a fresh install writes to options.json, with `changes`."""
    return {**config(slug)["options"], **changes}


def write_options(path: Path, options: dict[str, Any]) -> Path:
    """Write an options.json as the Supervisor does."""
    path.write_text(json.dumps(options), encoding="utf-8")
    return path


def discovery_payloads(
    slug: str,
    module: ModuleType,
    options: dict[str, Any],
    paths: tuple[Path, pytest.CaptureFixture[str]],
    hostname: str,
) -> dict[str, Any]:
    """Run `<command module> --discovery SERVICE` for each service in config.yaml.

    `paths` is the test's (tmp_path, capsys): where options.json goes, what prints.
    """
    tmp_path, capsys = paths
    path = write_options(tmp_path / "options.json", options)
    argv = ["--options", str(path), "--hostname", hostname]
    payloads = {}
    for service in config(slug)["discovery"]:
        assert module.main([*argv, "--discovery", service]) == 0
        payloads[service] = json.loads(capsys.readouterr().out)
    return payloads


def require_path(path: Path, why: str) -> Path:
    """Return `path`; when it is missing fail in CI, skip elsewhere."""
    if path.exists():
        return path
    message = f"{path} is missing ({why})"
    if CI:
        pytest.fail(message)
    pytest.skip(message)


def require_tool(name: str, package: str) -> str:
    """Return the path of a command-line tool; when missing fail in CI, else skip.

    scripts/setup installs every tool asked for here; sbin is searched too, where
    Debian puts apparmor_parser, since it is not on a plain user's PATH.
    """
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found:
        return found
    message = f"{name} is not installed: apt-get install -y {package}"
    if CI:
        pytest.fail(message)
    pytest.skip(message)

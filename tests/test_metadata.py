"""Manifest, hacs.json and translations: what HACS and hassfest read."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
import re
import shutil
import subprocess
from typing import Any

from awesomeversion import AwesomeVersion
from packaging.requirements import Requirement

from custom_components.local_voice.config_flow import NO_SERVICE_ERROR
from custom_components.local_voice.const import SERVICE_ASR, SERVICE_LLAMA, SERVICE_TTS
from custom_components.local_voice.sensor import (
    ASR_SENSORS,
    LLAMA_SENSORS,
    LOADED_MODELS,
    TTS_SENSORS,
)
from homeassistant.const import __version__ as HA_VERSION

COMPONENT = Path(__file__).resolve().parent.parent / "custom_components" / "local_voice"
ROOT = COMPONENT.parent.parent


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def test_manifest() -> None:
    """Every key HACS and hassfest require, with sensible values."""
    manifest = _load(COMPONENT / "manifest.json")
    for key in (
        "domain",
        "name",
        "version",
        "documentation",
        "issue_tracker",
        "codeowners",
        "config_flow",
        "iot_class",
        "integration_type",
        "requirements",
        "dependencies",
    ):
        assert key in manifest, key
    assert manifest["domain"] == COMPONENT.name
    assert manifest["config_flow"] is True
    assert AwesomeVersion(manifest["version"]).valid
    # hassfest: keys after domain and name are sorted.
    keys = list(manifest)[2:]
    assert keys == sorted(keys)
    assert (COMPONENT / "brand" / "icon.png").read_bytes().startswith(b"\x89PNG")


def test_requirements_are_ranges() -> None:
    """Compatible ranges, not pins (core's wyoming moves), that hold what is tested."""
    for line in _load(COMPONENT / "manifest.json")["requirements"]:
        requirement = Requirement(line)
        assert not any(spec.operator == "==" for spec in requirement.specifier), line
        assert requirement.specifier.contains(
            importlib.metadata.version(requirement.name)
        )


def test_hacs_minimum_version_is_tested() -> None:
    """hacs.json names the Home Assistant version this suite runs on."""
    hacs = _load(ROOT / "hacs.json")
    assert hacs["homeassistant"] == HA_VERSION


def test_translations_match_strings() -> None:
    """translations/en.json is the copy of strings.json Home Assistant reads."""
    strings = _load(COMPONENT / "strings.json")
    assert _load(COMPONENT / "translations" / "en.json") == strings


def _messages(tree: dict[str, Any], path: str = "") -> dict[str, str]:
    """Flatten a translation tree to {dotted key: text}."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= _messages(value, f"{path}{key}.")
        else:
            flat[f"{path}{key}"] = value
    return flat


def test_other_languages_translate_what_the_agent_says() -> None:
    """Each other language's file says every spoken message, with its placeholders.

    What the agent says itself (`exceptions`) is spoken in the pipeline's language;
    anything a language leaves out falls back to English.
    """
    english = _messages(_load(COMPONENT / "strings.json"))
    files = sorted((COMPONENT / "translations").glob("*.json"))
    assert [path.stem for path in files] == ["en", "ja"]
    for path in files[1:]:
        other = _messages(_load(path))
        assert set(other) <= set(english), path.name
        assert {key for key in english if key.startswith("exceptions.")} <= set(other)
        for key, text in other.items():
            holes = re.findall(r"{\w+}", english[key])
            assert sorted(re.findall(r"{\w+}", text)) == sorted(holes), key


def test_every_sensor_has_a_name() -> None:
    """Each sensor's name is translated, and nothing else is in `entity.sensor`."""
    names = _load(COMPONENT / "strings.json")["entity"]["sensor"]
    descriptions = [*LLAMA_SENSORS, *ASR_SENSORS, *TTS_SENSORS, LOADED_MODELS]
    assert [d.translation_key for d in descriptions] == list(names)
    assert all(name["name"] for name in names.values())


def _literals(source: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, source))


def test_every_flow_message_has_a_string() -> None:
    """Each step, error and abort reason the code can show is translated."""
    strings = _load(COMPONENT / "strings.json")
    source = (COMPONENT / "config_flow.py").read_text()
    errors = _literals(source, r'"base": "(\w+)"') | set(NO_SERVICE_ERROR.values())
    assert {"cannot_connect", "invalid_auth", "not_llama_server"} <= errors
    assert errors <= set(strings["config"]["error"])
    aborts = _literals(source, r'reason="(\w+)"') | {"already_configured"}
    assert aborts - {"entry_not_loaded"} <= set(strings["config"]["abort"])
    steps = _literals(source, r'step_id="(\w+)"') - {"init"}
    steps |= {SERVICE_LLAMA, SERVICE_ASR, SERVICE_TTS}
    assert steps <= set(strings["config"]["step"])
    for subentry in strings["config_subentries"].values():
        assert set(subentry["step"]) == {"init"}
        assert "entry_not_loaded" in subentry["abort"]


def test_every_exception_key_has_a_string() -> None:
    """Every translation_key raised in the integration is in strings.json."""
    strings = _load(COMPONENT / "strings.json")
    keys: set[str] = set()
    for path in COMPONENT.glob("*.py"):
        keys |= _literals(path.read_text(), r'translation_key="(\w+)"')
    assert keys
    assert keys <= set(strings["exceptions"]) | set(strings["config"]["error"])


def test_project_scripts_pass_shellcheck() -> None:
    """The README's set-up commands are clean shell."""
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is installed by scripts/setup"
    scripts = [ROOT / ".ci" / "run"] + [
        path
        for path in (ROOT / "scripts").rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc")
    ]
    assert len(scripts) >= 6
    result = subprocess.run(
        [shellcheck, *map(str, scripts)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout

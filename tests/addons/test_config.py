"""The add-ons' config.yaml, translations and store files, as the Supervisor reads them.

The linter's own schema (../shared/addon-lint) validates each config.yaml, with the
rules frenck/action-addon-linter adds on top of it; the options are checked against
their schema with the Supervisor's option types.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePath
import re
import struct
import subprocess
from typing import Any
import zlib

from jsonschema import Draft7Validator, ValidationError, validators
import pytest
import yaml

from tests.addons.addon_support import (
    ADDONS,
    LINT_DIR,
    ROOT,
    SLUGS,
    config,
    load_module,
    require_path,
)

# What the local_voice integration expects (custom_components/local_voice): its
# version, and the port and discovery services of each add-on.
INTEGRATION_VERSION = "0.1.0"
PORTS = {"llama_server": 8080, "whisper_cpp": 10300, "kokoro": 10200}
DISCOVERY = {
    "llama_server": ["local_voice"],
    "whisper_cpp": ["local_voice", "wyoming"],
    "kokoro": ["local_voice", "wyoming"],
}
# A model file in each add-on's model folder, as the backup sees it (/addon_configs).
MODEL_FILES = {
    "llama_server": "models/unsloth/Qwen3-4B-Instruct-2507-GGUF/model-Q4_K_M.gguf",
    "whisper_cpp": "models/ggerganov/whisper.cpp/ggml-base.bin",
    "kokoro": "models/onnx-community/Kokoro-82M-v1.0-ONNX/onnx/model.onnx",
}


def _schema(name: str) -> dict[str, Any]:
    path = require_path(LINT_DIR / name, "the add-on linter's schema, from ../shared")
    return json.loads(path.read_text(encoding="utf-8"))


def _linter_validator(schema: dict[str, Any]) -> Draft7Validator:
    """Draft 7, plus the linter's rule that a key equal to its default is an error."""
    properties = Draft7Validator.VALIDATORS["properties"]

    def with_defaults(
        validator: Any, props: dict[str, Any], instance: Any, subschema: Any
    ) -> Any:
        if isinstance(instance, dict):
            for key, rule in props.items():
                if "default" in rule and instance.get(key) == rule["default"]:
                    yield ValidationError(
                        f"'{key}' should be removed, it is the default"
                    )
        yield from properties(validator, props, instance, subschema)

    cls = validators.extend(Draft7Validator, {"properties": with_defaults})
    return cls(schema)


def _lint_errors(slug: str) -> list[str]:
    """Return the errors frenck/action-addon-linter reports for the add-on."""
    conf = config(slug)
    errors = [
        e.message
        for e in _linter_validator(_schema("config.schema.json")).iter_errors(conf)
    ]
    if conf.get("watchdog"):
        errors.append("'watchdog' is obsolete: use the Docker HEALTHCHECK instead")
    if "auto_uart" in conf:
        errors.append("'auto_uart' is deprecated")
    if conf.get("full_access") and {"devices", "gpio", "uart", "usb"} & set(conf):
        errors.append("'full_access' with devices")
    if any(":" in device for device in conf.get("devices", [])):
        errors.append("'devices' uses the old host:container format")
    if not isinstance(conf.get("tmpfs", False), bool):
        errors.append("'tmpfs' must be a boolean")
    if conf.get("ingress") and conf.get("webui"):
        errors.append("'webui' with ingress")
    if conf.get("backup") == "cold" and {"backup_pre", "backup_post"} & set(conf):
        errors.append("backup_pre/post with cold backups")
    build = ADDONS / slug / "build.yaml"
    if build.exists():
        content = yaml.safe_load(build.read_text(encoding="utf-8"))
        validator = _linter_validator(_schema("build.schema.json"))
        errors += [f"build.yaml: {e.message}" for e in validator.iter_errors(content)]
    return errors


@pytest.mark.parametrize("slug", SLUGS)
def test_config_passes_the_addon_linter(slug: str) -> None:
    assert _lint_errors(slug) == []


def test_the_linter_check_catches_defaults_and_watchdog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check above can fail: a default-valued key and a watchdog are reported."""
    broken = {**config("kokoro"), "init": True, "watchdog": "tcp://[HOST]:[PORT:10200]"}
    monkeypatch.setattr("tests.addons.test_config.config", lambda _slug: broken)
    errors = _lint_errors("kokoro")
    assert any("'init' should be removed" in error for error in errors)
    assert any("watchdog" in error for error in errors)


@pytest.mark.parametrize("slug", SLUGS)
def test_identity_versions_and_discovery(slug: str) -> None:
    conf = config(slug)
    assert conf["slug"] == slug == (ADDONS / slug).name
    assert conf["version"] == INTEGRATION_VERSION
    assert conf["init"] is False
    assert conf["video"] is True
    assert conf["discovery"] == DISCOVERY[slug]
    # Not exposed on the host unless the user maps them; llama_server's second port
    # is the rpc_worker role's (ggml-rpc-server's default).
    extra = {"50052/tcp": None} if slug == "llama_server" else {}
    assert conf["ports"] == {f"{PORTS[slug]}/tcp": None, **extra}
    assert "amd64" in conf["arch"]
    assert conf["image"] == f"ghcr.io/local-voice/local_voice-{slug}"  # test_publish
    assert conf.get("apparmor", True) is True, "apparmor.txt is the profile"
    assert conf["url"].startswith("https://github.com/") and conf["url"].endswith(slug)


def test_integration_agrees_on_names_versions_and_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The add-ons move in step with the integration they announce themselves to."""
    const = pytest.importorskip("custom_components.local_voice.const")
    manifest = ROOT / "custom_components/local_voice/manifest.json"
    assert json.loads(manifest.read_text())["version"] == INTEGRATION_VERSION
    assert const.DEFAULT_LLAMA_URL.endswith(f":{PORTS['llama_server']}")
    expected = {
        "llama_server": (const.SERVICE_LLAMA, PORTS["llama_server"]),
        "whisper_cpp": (const.SERVICE_ASR, const.DEFAULT_ASR_PORT),
        "kokoro": (const.SERVICE_TTS, const.DEFAULT_TTS_PORT),
    }
    modules = {
        "llama_server": "llama_command",
        "whisper_cpp": "whisper_command",
        "kokoro": "kokoro_command",
    }
    for slug, (service, port) in expected.items():
        module = load_module(slug, modules[slug], monkeypatch)
        payload = module.discovery({}, "host", module.PORT)[const.DOMAIN]
        assert (payload["service"], payload["port"]) == (service, port)
        assert config(slug)["discovery"][0] == const.DOMAIN


# --- options against their schema, with the Supervisor's types ----------------------

_RANGE = r"(?:\((?P<min>-?[\d.]*),(?P<max>-?[\d.]*)\))?"


def _option_error(rule: Any, value: Any) -> str | None:
    """Check one value against a Supervisor schema type; return what is wrong.

    A list of one mapping is a list option whose items have those keys.
    """
    if isinstance(rule, list):
        if not isinstance(value, list):
            return f"{value!r} is not a list"
        (keys,) = rule
        for item in value:
            if unknown := set(item) - set(keys):
                return f"unknown keys {unknown}"
            for key, item_rule in keys.items():
                if key in item:
                    if error := _option_error(item_rule, item[key]):
                        return f"{key}: {error}"
                elif not item_rule.endswith("?"):
                    return f"{key} is missing"
        return None
    rule = rule.removesuffix("?")
    if match := re.fullmatch(r"list\((?P<items>.+)\)", rule, re.DOTALL):
        items = match["items"].split("|")
        return None if value in items else f"{value!r} not in {items}"
    if rule in ("str", "password"):
        return None if isinstance(value, str) else f"{value!r} is not a string"
    if rule == "bool":
        return None if isinstance(value, bool) else f"{value!r} is not a bool"
    if match := re.fullmatch(rf"(?P<kind>int|float){_RANGE}", rule):
        kinds = (int,) if match["kind"] == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            return f"{value!r} is not {match['kind']}"
        if match["min"] and value < float(match["min"]):
            return f"{value!r} < {match['min']}"
        if match["max"] and value > float(match["max"]):
            return f"{value!r} > {match['max']}"
        return None
    return f"unknown schema type {rule!r}"


def test_option_checker_rejects_bad_values() -> None:
    assert _option_error("int(1,16)", 17) is not None
    assert _option_error("float(0.5,2.0)", 0.4) is not None
    assert _option_error("list(a|b)", "c") is not None
    assert _option_error("bool", "true") is not None
    assert _option_error("int(0,)", 8192) is None
    models = [{"path": "str?", "context_size": "int(0,)?"}]
    assert _option_error(models, [{"path": "/share/a.gguf"}]) is None
    assert _option_error(models, [{"context_size": -1}]) is not None
    assert _option_error(models, [{"size": 1}]) is not None


@pytest.mark.parametrize("slug", SLUGS)
def test_options_match_schema(slug: str) -> None:
    conf = config(slug)
    options, schema = conf["options"], conf["schema"]
    assert set(options) <= set(schema)
    for key, rule in schema.items():
        if key in options:
            assert _option_error(rule, options[key]) is None, key
        else:
            assert rule.endswith("?"), f"{key} has no default, so it must be optional"


@pytest.mark.parametrize("slug", SLUGS)
def test_translations_cover_every_option_and_port(slug: str) -> None:
    conf = config(slug)
    path = ADDONS / slug / "translations/en.yaml"
    translations = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert set(translations["configuration"]) == set(conf["schema"])
    for key, text in translations["configuration"].items():
        assert text["name"].strip() and text["description"].strip(), key
    assert set(translations["network"]) == set(conf["ports"])


@pytest.mark.parametrize("slug", SLUGS)
def test_backup_leaves_models_out(slug: str) -> None:
    """The Supervisor matches backup_exclude against full paths, with PurePath.match."""
    conf = config(slug)
    folder = PurePath("/data/addon_configs", f"local_{slug}")
    model = folder / MODEL_FILES[slug]
    assert any(model.match(pattern) for pattern in conf["backup_exclude"])
    # ... and whole model folders are skipped without descending into them,
    assert any((folder / "models").match(pattern) for pattern in conf["backup_exclude"])
    # while the add-on's other files stay in the backup.
    for kept in ("options.json", "notes.txt"):
        assert not any((folder / kept).match(p) for p in conf["backup_exclude"])
    maps = {entry["type"]: entry for entry in conf["map"]}
    assert maps["addon_config"]["read_only"] is False  # the model cache lives there


@pytest.mark.parametrize("slug", SLUGS)
def test_store_files_are_there(slug: str) -> None:
    folder = ADDONS / slug
    for name in ("DOCS.md", "README.md", "CHANGELOG.md", "apparmor.txt", "Dockerfile"):
        assert (folder / name).is_file(), name
    changelog = (folder / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## {INTEGRATION_VERSION}" in changelog


def _png_size(path: Path) -> tuple[int, int]:
    """Check that `path` is a PNG whose chunks all have valid CRCs; return its size."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path.name}: bad {kind!r} chunk"
        chunks.append(kind)
        offset += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("slug", SLUGS)
def test_icon_and_logo_are_real_pngs(slug: str) -> None:
    """Store sizes: a square icon (128 px), a landscape logo (250 x 100 px)."""
    assert _png_size(ADDONS / slug / "icon.png") == (128, 128)
    assert _png_size(ADDONS / slug / "logo.png") == (250, 100)


def test_the_store_finds_exactly_the_three_addons() -> None:
    """The Supervisor reads every `**/config.{json,yaml,yml}` of the cloned repository
    (not under a hidden folder or a rootfs/) as an add-on."""
    try:
        tracked = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except OSError, subprocess.CalledProcessError:
        pytest.skip("not a git checkout")
    found = sorted(
        str(PurePath(path).parent)
        for path in tracked
        if PurePath(path).name in ("config.json", "config.yaml", "config.yml")
        and not any(p.startswith(".") or p == "rootfs" for p in PurePath(path).parts)
    )
    assert found == sorted(f"addons/{slug}" for slug in SLUGS)


def test_repository_yaml_for_the_store() -> None:
    repo = yaml.safe_load((ROOT / "repository.yaml").read_text(encoding="utf-8"))
    assert set(repo) == {"name", "url", "maintainer"}
    assert repo["url"].startswith("https://github.com/")
    assert all(isinstance(value, str) and value.strip() for value in repo.values())

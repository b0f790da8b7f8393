"""What goes into the add-on images: Dockerfiles, pins, s6 services, scripts, AppArmor.

Building an image takes minutes (scripts/build-addon SLUG --smoke builds and runs one
with buildah, outside the suite); these tests hold the Dockerfiles to what DOCS.md
promises and shellcheck every script (test_shared_code.py: the code they share).
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
import re
import subprocess

import pytest

from tests.addons.addon_support import ADDONS, LIB, SLUGS, config, require_tool

BASE_IMAGE = "ghcr.io/home-assistant/base-debian:trixie"
LLAMA_CPP = re.compile(r"^ARG LLAMA_CPP_VERSION=(b\d+)$", re.MULTILINE)
S6 = Path("rootfs/etc/s6-overlay/s6-rc.d")
COMMAND_MODULES = {
    "llama_server": "llama_command.py",
    "whisper_cpp": "whisper_command.py",
    "kokoro": "kokoro_command.py",
}


def _read(slug: str, name: str | Path) -> str:
    return (ADDONS / slug / name).read_text(encoding="utf-8")


def _requirements(slug: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in _read(slug, "requirements.txt").splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, pinned = line.partition("==")
            assert sep and re.fullmatch(r"[\w.+-]+", pinned), f"not pinned: {line}"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = pinned
    return pins


def _scripts(slug: str) -> list[Path]:
    root = ADDONS / slug
    return sorted(
        [
            *root.glob(f"{S6}/*/run"),
            *root.glob(f"{S6}/*/finish"),
            root / "rootfs/usr/local/bin/healthcheck",
        ]
    )


@pytest.mark.parametrize("slug", SLUGS)
def test_dockerfile_base_image_comes_from_build_from(slug: str) -> None:
    """Supervisor 2026.04+: no build.yaml, the base is BUILD_FROM's default."""
    dockerfile = _read(slug, "Dockerfile")
    lines = [line for line in dockerfile.splitlines() if line and line[0] != "#"]
    assert lines[0] == f"ARG BUILD_FROM={BASE_IMAGE}"
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms and all(line.split()[1] == "${BUILD_FROM}" for line in froms)
    assert not (ADDONS / slug / "build.yaml").exists()
    assert "COPY rootfs /" in dockerfile
    assert re.search(
        r"HEALTHCHECK .*\n\s+CMD \[\"/usr/local/bin/healthcheck\"\]", dockerfile
    )
    assert 'io.hass.version="${BUILD_VERSION}"' in dockerfile


def test_llama_cpp_is_built_as_documented() -> None:
    dockerfile = _read("llama_server", "Dockerfile")
    match = LLAMA_CPP.search(dockerfile)
    assert match, "the llama.cpp release is pinned"
    # The release archive by default; another copy of the same tree (build-addon's
    # loopback server) only as a build argument, checked by its SHA-256 when given.
    assert re.search(
        r"^ARG LLAMA_CPP_SOURCE=https://github\.com/ggml-org/llama\.cpp/archive/"
        r"refs/tags/\$\{LLAMA_CPP_VERSION\}\.tar\.gz$",
        dockerfile,
        re.MULTILINE,
    )
    assert "sha256sum --check --strict" in dockerfile
    for flag in (
        "-DGGML_VULKAN=ON",
        "-DGGML_RPC=ON",  # ggml-rpc-server, and llama-server's --rpc
        "-DGGML_BACKEND_DL=ON",
        "-DGGML_CPU_ALL_VARIANTS=ON",
        "-DGGML_NATIVE=OFF",
    ):
        assert flag in dockerfile
    for package in ("glslc", "libvulkan-dev", "spirv-headers", "libvulkan1"):
        assert re.search(rf"^\s+{package}( \\)?$", dockerfile, re.MULTILINE), package
    assert "mesa-vulkan-drivers" in dockerfile  # RADV, ANV, NVK
    assert "amdvlk" not in dockerfile.lower()  # deprecated by AMD
    assert "llama-server --version" in dockerfile  # the image fails to build if broken
    assert "ggml-rpc-server --help" in dockerfile
    assert match[1] in _read("llama_server", "DOCS.md")


def test_whisper_cpp_is_built_with_vulkan() -> None:
    dockerfile = _read("whisper_cpp", "Dockerfile")
    assert "GGML_VULKAN=1" in dockerfile
    # Linked into the extension: a shared libwhisper.so.1 stays in the build stage.
    assert "BUILD_SHARED_LIBS=OFF CMAKE_POSITION_INDEPENDENT_CODE=ON" in dockerfile
    assert "--no-binary pywhispercpp" in dockerfile
    assert "mesa-vulkan-drivers" in dockerfile and "libvulkan1" in dockerfile
    pins = _requirements("whisper_cpp")
    assert pins["pywhispercpp"] == "1.5.1"
    assert pins["wyoming-whisper-cpp"] == "2.6.1"


@pytest.mark.parametrize("slug", SLUGS)
def test_python_packages_are_pinned_to_the_tested_versions(slug: str) -> None:
    """What the tests here ran on is what the images install."""
    pins = _requirements(slug)
    assert pins["huggingface-hub"] == version("huggingface_hub")
    if slug != "llama_server":
        assert pins["wyoming"] == version("wyoming")
    # DOCS.md names the versions ("huggingface_hub 2.4.0", line breaks allowed).
    docs = " ".join(_read(slug, "DOCS.md").replace("-", "_").split())
    for package in ("huggingface-hub", "wyoming", "pywhispercpp", "kokoro-onnx"):
        if package in pins:
            named = f"{package.replace('-', '_')} {pins[package]}"
            assert named in docs, f"DOCS.md names {named}"


@pytest.mark.parametrize("slug", SLUGS)
def test_s6_services_are_wired(slug: str) -> None:
    s6 = ADDONS / slug / S6
    assert (s6 / slug / "type").read_text().strip() == "longrun"
    assert (s6 / "discovery/type").read_text().strip() == "oneshot"
    assert (s6 / "discovery/up").read_text().strip() == f"/{S6}/discovery/run".replace(
        "/rootfs", ""
    )
    assert (s6 / f"discovery/dependencies.d/{slug}").exists()
    assert sorted(p.name for p in (s6 / "user/contents.d").iterdir()) == sorted(
        ["discovery", slug]
    )
    module = COMMAND_MODULES[slug]
    assert (ADDONS / slug / LIB / module).is_file()
    run = (s6 / slug / "run").read_text()
    assert f"exec python3 /usr/local/lib/local_voice/{module}\n" in run
    discovery = (s6 / "discovery/run").read_text()
    assert f"/usr/local/lib/local_voice/{module}" in discovery
    announced = re.findall(r"^announce (\S+)$", discovery, re.MULTILINE)
    assert announced == config(slug)["discovery"]
    assert "healthcheck --ready" in discovery  # only announced once it answers


@pytest.mark.parametrize("slug", SLUGS)
def test_scripts_are_executable_and_pass_shellcheck(slug: str) -> None:
    shellcheck = require_tool("shellcheck", "shellcheck")
    scripts = _scripts(slug)
    assert len(scripts) == 4
    for script in scripts:
        assert script.stat().st_mode & 0o111 == 0o111, f"{script} is not executable"
        first = script.read_text().splitlines()[:2]
        assert first[0] in ("#!/command/with-contenv bashio", "#!/usr/bin/env bash")
        if "bashio" in first[0]:
            assert first[1] == "# shellcheck shell=bash"
    result = subprocess.run(
        [shellcheck, "--external-sources", *map(str, scripts)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_shellcheck_check_can_fail(tmp_path: Path) -> None:
    shellcheck = require_tool("shellcheck", "shellcheck")
    bad = tmp_path / "run"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/*\n")
    result = subprocess.run([shellcheck, bad], capture_output=True, check=False)
    assert result.returncode != 0


@pytest.mark.parametrize("slug", SLUGS)
def test_apparmor_profile_parses(slug: str) -> None:
    profile = _read(slug, "apparmor.txt")
    header = rf"^profile {slug} flags=\(attach_disconnected,mediate_deleted\) {{$"
    assert re.search(header, profile, re.MULTILINE)
    assert "/dev/dri/{,**} rw," in profile  # the GPU
    assert "/config/{,**} rwk," in profile  # the model cache
    parser = require_tool("apparmor_parser", "apparmor")  # scripts/setup installs it
    result = subprocess.run(
        [parser, "--skip-kernel-load", "--skip-cache", ADDONS / slug / "apparmor.txt"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr

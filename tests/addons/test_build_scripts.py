"""scripts/build-addon and scripts/addon_build/base-image, without building an image.

A real build takes minutes as root (README.md, "Building the add-on images"). What
broke it on a fresh machine is checked here in a temporary folder: base-image's link
handling, whatever the host has installed, and build-addon stopping at a failed step.
"""

from __future__ import annotations

from pathlib import Path
import shutil
import subprocess

from tests.addons.addon_support import ROOT

BASE_IMAGE = ROOT / "scripts/addon_build/base-image"
BUILD_ADDON = ROOT / "scripts/build-addon"
# Program paths as the image's root sees them; none of them exists on this host.
PROGRAMS = [
    "/usr/bin/lv-test-execlineb",
    "/usr/lib/lv-test/bin/lv-test-execlineb",  # the same name again: the first wins
    "/usr/bin/with-contenv",  # s6-overlay's own entry stays
    "/usr/bin/lv-test-s6-svc",
]


def _bash(script: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run `script` in bash with base-image's functions sourced."""
    return subprocess.run(
        ["bash", "-c", f'source "{BASE_IMAGE}"\n{script}'],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def _layout(root: Path) -> Path:
    """Make s6-overlay's command folder: one real link, one link kept as a file."""
    package = root / "package/admin/s6-overlay-3.2.3.0/command"
    package.mkdir(parents=True)
    for name in ("with-contenv", "printcontenv"):
        (package / name).write_text("#!/command/execlineb -S0\nexec $@\n")
    (root / "package/admin/s6-overlay").symlink_to("s6-overlay-3.2.3.0")
    command = root / "command"
    command.mkdir()
    (command / "with-contenv").symlink_to(
        "../package/admin/s6-overlay/command/with-contenv"
    )
    (command / "printcontenv").write_text(
        "../package/admin/s6-overlay/command/printcontenv"
    )
    return command


def test_base_image_makes_every_command_a_link(tmp_path: Path) -> None:
    command = _layout(tmp_path)
    result = _bash('restore_links "$PWD/command"', tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("with-contenv", "printcontenv"):
        link = command / name
        assert link.is_symlink()
        assert str(link.readlink()) == f"../package/admin/s6-overlay/command/{name}"
        assert link.read_text().startswith("#!/command/execlineb")


def test_base_image_refuses_a_command_that_is_a_script(tmp_path: Path) -> None:
    (tmp_path / "command").mkdir()
    (tmp_path / "command/with-contenv").write_text("#!/bin/sh\nexec env\n")
    result = _bash('restore_links "$PWD/command"', tmp_path)
    assert result.returncode != 0
    assert "neither a symlink nor a file naming its target" in result.stderr


def test_base_image_links_programs_without_following_links(tmp_path: Path) -> None:
    """Absolute links in the new root point at nothing here: still 'there'."""
    assert not any(Path(p).exists() for p in PROGRAMS)
    command = _layout(tmp_path)
    script = 'restore_links "$PWD/command" && link_programs "$PWD"'
    result = _bash(script, tmp_path, "\n".join(PROGRAMS) + "\n")
    assert result.returncode == 0, result.stderr
    links = {p.name: str(p.readlink()) for p in command.iterdir()}
    assert links == {
        "lv-test-execlineb": "/usr/bin/lv-test-execlineb",
        "lv-test-s6-svc": "/usr/bin/lv-test-s6-svc",
        "with-contenv": "../package/admin/s6-overlay/command/with-contenv",
        "printcontenv": "../package/admin/s6-overlay/command/printcontenv",
    }


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    path.chmod(0o755)


def test_build_addon_stops_at_a_failed_base_image(tmp_path: Path) -> None:
    """The base is made inside $(...): its failure must end the build there."""
    repo = tmp_path / "repo"
    (repo / "scripts/addon_build").mkdir(parents=True)
    shutil.copy(BUILD_ADDON, repo / "scripts")
    _stub(
        repo / "scripts/addon_build",
        "base-image",
        'echo "debootstrap: boom" >&2\nexit 3',
    )
    (repo / "addons/kokoro").mkdir(parents=True)
    (repo / "addons/kokoro/Dockerfile").write_text("FROM scratch\n")
    (repo / "addons/kokoro/config.yaml").write_text("version: 1.0.0\n")
    (tmp_path / "shared/addon-base").mkdir(parents=True)
    (tmp_path / "shared/addon-base/piece").write_text("piece\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "buildah.calls"
    # buildah: no image is there yet; every other call is recorded and succeeds.
    _stub(bin_dir, "buildah", f'echo "$*" >> "{calls}"\n[[ "$*" != *inspect* ]]')
    _stub(bin_dir, "debootstrap", "exit 0")
    _stub(bin_dir, "id", "echo 0")
    result = subprocess.run(
        ["bash", repo / "scripts/build-addon", "kokoro"],
        env={
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "LOCAL_VOICE_ADDON_CACHE": str(tmp_path / "cache"),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 3
    assert "debootstrap: boom" in result.stderr
    assert "building" not in result.stdout
    assert " bud " not in f" {calls.read_text()} "

"""The workflow that publishes the add-on images, checked statically.

It runs only on GitHub (a release): pushing to ghcr.io and building for aarch64 cannot
run on these machines, so these tests hold the workflow to what config.yaml and
DOCS.md say: one multi-arch image per add-on, under the name `image:` gives, built
from the add-on's own Dockerfile for every architecture config.yaml lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.addons.addon_support import ADDONS, ROOT, SLUGS, config

WORKFLOW = ROOT / ".github/workflows/publish.yml"
PLATFORMS = {"amd64": "linux/amd64", "aarch64": "linux/arm64"}


def _workflow() -> dict[Any, Any]:
    return dict(yaml.safe_load(WORKFLOW.read_text(encoding="utf-8")))


def _uses(job: dict[str, Any]) -> list[str]:
    return [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]


def _run(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_images_are_one_multi_arch_name_per_addon() -> None:
    """`image:` without {arch}: the Supervisor pulls the manifest list's own arch."""
    images = {slug: config(slug)["image"] for slug in SLUGS}
    for slug, image in images.items():
        assert image == image.lower() and "{arch}" not in image
        assert image.startswith("ghcr.io/") and image.endswith(slug)
    assert len(set(images.values())) == len(SLUGS)


def test_workflow_runs_on_a_release() -> None:
    workflow = _workflow()
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["release"] == {"types": ["published"]}
    assert workflow["permissions"] == {"contents": "read", "packages": "write"}


def test_every_addon_and_architecture_is_built_from_its_dockerfile() -> None:
    build = _workflow()["jobs"]["build"]
    matrix = build["strategy"]["matrix"]
    assert matrix["addon"] == list(SLUGS)
    for slug in SLUGS:
        assert sorted(config(slug)["arch"]) == sorted(matrix["arch"])
        assert (ADDONS / slug / "Dockerfile").is_file()
    included = {item["arch"]: item for item in matrix["include"]}
    assert {arch: item["platform"] for arch, item in included.items()} == PLATFORMS
    assert included["aarch64"]["runner"].endswith("-arm")  # native, not emulated
    assert _uses(build) == [
        "actions/checkout",
        "docker/setup-buildx-action",
        "docker/login-action",
        "docker/build-push-action",
        "actions/upload-artifact",
    ]
    (push,) = [
        s for s in build["steps"] if s.get("uses", "").startswith("docker/build")
    ]
    options = push["with"]
    assert options["context"] == "addons/${{ matrix.addon }}"
    assert options["platforms"] == "${{ matrix.platform }}"
    assert "file" not in options and "BUILD_FROM" not in options["build-args"]
    assert "BUILD_ARCH=${{ matrix.arch }}" in options["build-args"]
    assert "BUILD_VERSION=${{ steps.addon.outputs.version }}" in options["build-args"]
    assert "push-by-digest=true" in options["outputs"]
    assert 'yq -r .image "addons/${{ matrix.addon }}/config.yaml"' in _run(build)


def test_digests_are_joined_under_the_addon_version() -> None:
    publish = _workflow()["jobs"]["publish"]
    assert publish["needs"] == "build"
    assert publish["strategy"]["matrix"]["addon"] == list(SLUGS)
    script = _run(publish)
    assert "docker buildx imagetools create" in script
    assert '--tag "${image}:${version}"' in script
    for arch in PLATFORMS:
        assert f'"${{image}}@$(cat digests/{arch})"' in script
    assert 'yq -r .version "addons/${{ matrix.addon }}/config.yaml"' in script


def test_docs_say_what_is_prebuilt_and_untested() -> None:
    for slug in SLUGS:
        docs = (ADDONS / slug / "DOCS.md").read_text(encoding="utf-8")
        assert config(slug)["image"] in docs
        assert "untested" in docs.lower()
    assert Path(WORKFLOW).name in (ROOT / "README.md").read_text(encoding="utf-8")

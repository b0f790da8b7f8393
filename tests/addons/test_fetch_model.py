"""The model fetch step (fetch_model.py), against a local stand-in for the Hub.

huggingface_hub runs unchanged: only the endpoint points at tests/addons/hub_stub.py,
which serves a temporary folder on a loopback port. The llama_server copy is tested;
test_shared_code.py keeps every add-on's copy equal to the one source,
addons/shared/fetch_model.py.
"""

from __future__ import annotations

from collections.abc import Iterator
import logging
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.addons import hub_stub
from tests.addons.addon_support import load_module

REPO = "ggml-org/tiny-GGUF"
FILE = "tiny-q4_0.gguf"


@pytest.fixture
def fetch(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Return the add-ons' fetch_model module."""
    return load_module("llama_server", "fetch_model", monkeypatch)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[hub_stub.HubStub]:
    """Serve a hub with one repository holding one 3 MB file."""
    root = tmp_path / "hub"
    (root / REPO).mkdir(parents=True)
    (root / REPO / FILE).write_bytes(os.urandom(3_000_000))
    with hub_stub.serve(root) as stub:
        yield stub


def _ensure(fetch: ModuleType, hub: hub_stub.HubStub, models: Path, **kw: Any) -> Path:
    spec = fetch.ModelFile(kw.pop("repo", REPO), kw.pop("filename", FILE))
    path: Path = fetch.ensure_file(spec, models, endpoint=hub.endpoint, **kw)
    return path


def test_downloads_into_the_model_folder(
    fetch: ModuleType,
    hub: hub_stub.HubStub,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "local_voice.fetch")
    path = _ensure(fetch, hub, tmp_path / "models")
    assert path == tmp_path / "models" / REPO / FILE
    assert path.read_bytes() == (hub.root / REPO / FILE).read_bytes()
    assert not path.with_name(FILE + ".part").exists()
    assert [r.method for r in hub.requests] == ["HEAD", "GET"]
    assert f"Downloading {REPO}/{FILE} (3.0 MB)" in caplog.text
    assert f"{FILE}: 100% (3.0 MB of 3.0 MB)" in caplog.text


def test_present_file_is_not_fetched_again(
    fetch: ModuleType, hub: hub_stub.HubStub, tmp_path: Path
) -> None:
    first = _ensure(fetch, hub, tmp_path / "models")
    hub.requests.clear()
    again = fetch.ensure_file(
        fetch.ModelFile(REPO, FILE),
        tmp_path / "models",
        endpoint="http://127.0.0.1:9",  # nothing listens: the Hub is not even asked
    )
    assert again == first
    assert hub.requests == []


def test_interrupted_download_resumes_where_it_stopped(
    fetch: ModuleType,
    hub: hub_stub.HubStub,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "local_voice.fetch")
    data = (hub.root / REPO / FILE).read_bytes()
    part = tmp_path / "models" / REPO / f"{FILE}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1_234_567])  # what an add-on restart left behind
    path = _ensure(fetch, hub, tmp_path / "models")
    assert path.read_bytes() == data
    assert [r.range for r in hub.downloads()] == ["bytes=1234567-"]
    assert "Resuming" in caplog.text


def test_resume_copes_with_a_server_that_ignores_ranges(
    fetch: ModuleType, hub: hub_stub.HubStub, tmp_path: Path
) -> None:
    """A 200 instead of 206: the partial file is dropped, not doubled."""
    hub.honour_ranges = False
    data = (hub.root / REPO / FILE).read_bytes()
    part = tmp_path / "models" / REPO / f"{FILE}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1_000_000])
    assert _ensure(fetch, hub, tmp_path / "models").read_bytes() == data
    assert [r.range for r in hub.downloads()] == ["bytes=1000000-"]


def test_progress_is_logged_in_steps(
    fetch: ModuleType,
    hub: hub_stub.HubStub,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, "local_voice.fetch")
    monkeypatch.setattr("huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE", 100_000)
    _ensure(fetch, hub, tmp_path / "models")
    steps = [m for m in caplog.messages if m.startswith(f"{FILE}: ")]
    percents = [int(m.split(": ")[1].split("%")[0]) for m in steps]
    assert percents == sorted(percents) and len(percents) >= 9
    assert percents[-1] == 100


@pytest.mark.parametrize(
    ("repo", "filename", "expected"),
    [
        (
            "nobody/nothing-GGUF",
            FILE,
            "repository 'nobody/nothing-GGUF' does not exist",
        ),
        (REPO, "missing.gguf", "File 'missing.gguf' does not exist in Hugging Face"),
    ],
)
def test_missing_repository_or_file_is_a_clear_error(
    fetch: ModuleType,
    hub: hub_stub.HubStub,
    tmp_path: Path,
    repo: str,
    filename: str,
    expected: str,
) -> None:
    with pytest.raises(fetch.FetchError, match=expected):
        _ensure(fetch, hub, tmp_path / "models", repo=repo, filename=filename)
    assert hub.downloads() == []
    assert not (tmp_path / "models" / repo / filename).exists()


def test_gated_repository_asks_for_a_token(
    fetch: ModuleType, hub: hub_stub.HubStub, tmp_path: Path
) -> None:
    (hub.root / REPO / ".gated").touch()
    with pytest.raises(fetch.FetchError, match=r"is gated: .* hf_token"):
        _ensure(fetch, hub, tmp_path / "models")


def test_unreachable_hub_is_a_clear_error(fetch: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(fetch.FetchError, match="Cannot reach Hugging Face"):
        fetch.ensure_file(
            fetch.ModelFile(REPO, FILE), tmp_path, endpoint="http://127.0.0.1:9"
        )


def test_not_enough_space_is_said_before_downloading(
    fetch: ModuleType,
    hub: hub_stub.HubStub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    usage = fetch.shutil.disk_usage(tmp_path)._replace(free=2_000_000)
    monkeypatch.setattr(fetch.shutil, "disk_usage", lambda _path: usage)
    with pytest.raises(
        fetch.FetchError, match=r"Not enough disk space .* 2\.0 MB is free"
    ):
        _ensure(fetch, hub, tmp_path / "models")
    assert hub.downloads() == []


def test_disk_full_while_writing_is_a_clear_error(
    fetch: ModuleType, hub: hub_stub.HubStub, tmp_path: Path
) -> None:
    """Writes go to /dev/full, which fails every write with ENOSPC, like a full disk."""
    part = tmp_path / "models" / REPO / f"{FILE}.part"
    part.parent.mkdir(parents=True)
    part.symlink_to("/dev/full")
    with pytest.raises(fetch.FetchError, match="The disk is full while downloading"):
        _ensure(fetch, hub, tmp_path / "models")
    assert not (tmp_path / "models" / REPO / FILE).exists()


def test_marker_exists_only_while_downloading(
    fetch: ModuleType,
    hub: hub_stub.HubStub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The HEALTHCHECK reads it: an add-on busy downloading counts as healthy."""
    marker = tmp_path / "run/fetching"
    monkeypatch.setenv(fetch.MARKER_ENV, str(marker))
    seen: list[bool] = []
    real_get = fetch.http_get

    def watching_get(*args: Any, **kwargs: Any) -> None:
        seen.append(marker.exists())
        real_get(*args, **kwargs)

    monkeypatch.setattr(fetch, "http_get", watching_get)
    _ensure(fetch, hub, tmp_path / "models")
    assert seen == [True]
    assert not marker.exists()


@pytest.mark.parametrize(
    ("repo", "filename"),
    [("../etc", FILE), ("owner/name", "../../passwd"), ("no-owner", FILE), (REPO, " ")],
)
def test_names_cannot_leave_the_model_folder(
    fetch: ModuleType, tmp_path: Path, repo: str, filename: str
) -> None:
    with pytest.raises(fetch.FetchError, match="not a"):
        fetch.ModelFile(repo, filename).local_path(tmp_path)


def test_command_line(
    fetch: ModuleType,
    hub: hub_stub.HubStub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    argv = [REPO, FILE, "--models-dir", str(tmp_path)]
    assert fetch.main(argv) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / REPO / FILE)
    assert fetch.main([REPO, "nope.gguf", "--models-dir", str(tmp_path)]) == 1


@pytest.mark.parametrize(
    ("size", "text"),
    [(512, "512 B"), (98_000_000, "98.0 MB"), (12_345_678_901, "12.3 GB")],
)
def test_sizes_read_well_in_the_log(fetch: ModuleType, size: int, text: str) -> None:
    assert fetch.human_size(size) == text

"""Fetch a model file from Hugging Face into the add-on's model folder.

Shared by the three local_voice add-ons. Written once, in addons/shared/; since an
add-on's Docker build context is only its own folder, scripts/sync-addon-shared copies
it into each add-on (tests/addons/test_shared_code.py keeps the copies equal).

Why not `hf_hub_download` itself: since huggingface_hub 1.x it deletes its partial
file when a download is interrupted, so a multi-GB GGUF would start again from zero
after every add-on restart. Here the library still resolves the file
(`get_hf_file_metadata`, which raises `RepositoryNotFoundError`, `EntryNotFoundError`,
`GatedRepoError`) and streams it (`http_get`, with its own retries and HTTP range
resumes), but into `<file>.part` beside the destination: that survives a restart and
the next start resumes it where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
from dataclasses import dataclass
import errno
import logging
import os
from pathlib import Path, PurePosixPath
import shutil
import sys
import time
from typing import Any, cast

from huggingface_hub import get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import http_get
from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

_LOGGER = logging.getLogger("local_voice.fetch")

# While a file is being fetched this marker exists, so that the container's HEALTHCHECK
# says "healthy" instead of having an add-on that is busy downloading restarted.
MARKER_ENV = "LOCAL_VOICE_FETCH_MARKER"
# Keep this much free beyond the file: a disk filled to the last byte breaks the rest
# of the system (Home Assistant's database, logs) before it breaks the download.
DISK_MARGIN = 64 * 1024 * 1024
_RESTART = "Restart the add-on to resume it."


class FetchError(Exception):
    """A model could not be fetched; the message says why and what to do."""


@dataclass(frozen=True)
class ModelFile:
    """One file of a Hugging Face model repository."""

    repo_id: str
    filename: str
    revision: str = "main"
    # The add-on options that chose the repository and the file: an error names them,
    # so that the log says what to change.
    repo_option: str = ""
    file_option: str = ""

    def local_path(self, models_dir: Path) -> Path:
        """Return where the file lives: `<models_dir>/<owner>/<repo>/<filename>`."""
        for part in (self.repo_id, self.filename):
            pure = PurePosixPath(part)
            if pure.is_absolute() or ".." in pure.parts or not part.strip():
                msg = f"'{part}' is not a valid Hugging Face repository or file name"
                raise FetchError(msg)
        if self.repo_id.count("/") != 1:
            msg = f"'{self.repo_id}' is not a Hugging Face repository id (owner/name)"
            raise FetchError(msg)
        owner, name = self.repo_id.split("/")
        return models_dir.joinpath(owner, name, *self.filename.split("/"))


def human_size(size: float) -> str:
    """Format a byte count the way the log shows it (98.0 MB, 1.5 GB)."""
    if size < 1000:
        return f"{size:.0f} B"
    for unit in ("kB", "MB"):
        size /= 1000
        if size < 1000:
            return f"{size:.1f} {unit}"
    return f"{size / 1000:.1f} GB"


class LogProgress:
    """Report download progress as log lines instead of a terminal progress bar.

    huggingface_hub creates it as it would a `tqdm` class (total, initial, desc) and
    calls `update`; an add-on log cannot show a redrawn bar, so a line is written
    every 10 % or every 30 s, whichever comes first.
    """

    step = 10
    interval = 30.0

    def __init__(
        self, *, total: int | None = None, initial: int = 0, desc: str = "", **_: Any
    ) -> None:
        self.total = total
        self.n = initial
        self.desc = desc
        self._started = time.monotonic()
        self._initial = initial
        self._last_time = self._started
        self._last_step = self._percent() // self.step

    def _percent(self) -> int:
        return int(self.n * 100 / self.total) if self.total else 0

    def update(self, n: float = 1) -> None:
        """Count received bytes; log when a step or the interval has passed."""
        self.n += int(n)
        now = time.monotonic()
        step = self._percent() // self.step
        if step != self._last_step or now - self._last_time >= self.interval:
            self._last_step, self._last_time = step, now
            rate = (self.n - self._initial) / max(now - self._started, 1e-6)
            done = human_size(self.n)
            if self.total:
                done = f"{self._percent()}% ({done} of {human_size(self.total)})"
            _LOGGER.info("%s: %s, %s/s", self.desc, done, human_size(rate))

    def close(self) -> None:
        """Release nothing: the bar is only log lines."""

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def _fetching() -> Iterator[None]:
    """Create the HEALTHCHECK marker for the duration of a download."""
    marker = os.environ.get(MARKER_ENV)
    if not marker:
        yield
        return
    path = Path(marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def ensure_file(
    model: ModelFile,
    models_dir: Path,
    *,
    token: str | None = None,
    endpoint: str | None = None,
) -> Path:
    """Return the local path of `model`, downloading it first when it is not there.

    A file already on disk is used as it is, without asking the Hub (no network).
    An interrupted download leaves `<file>.part`, which the next call resumes.
    """
    dest = model.local_path(models_dir)
    if dest.is_file():
        size = human_size(dest.stat().st_size)
        _LOGGER.info("Using %s (%s, already downloaded)", dest, size)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = hf_hub_url(
        model.repo_id, model.filename, revision=model.revision, endpoint=endpoint
    )
    with _fetching():
        try:
            meta = get_hf_file_metadata(url, token=token, endpoint=endpoint)
        except Exception as err:
            raise FetchError(_metadata_error(model, err)) from err
        _download(meta.location, meta.size, dest, model, token)
    _LOGGER.info("Downloaded %s/%s", model.repo_id, model.filename)
    return dest


def _metadata_error(model: ModelFile, err: Exception) -> str:
    """Say what is wrong, in the add-on's terms, when the Hub cannot give the file."""
    repo = model.repo_id
    if isinstance(err, GatedRepoError):
        return (
            f"Hugging Face repository '{repo}' is gated: accept its terms on "
            "huggingface.co and set the add-on's hf_token option"
        )
    if isinstance(err, RepositoryNotFoundError):
        fix = (
            f"set the add-on's {model.repo_option} option to an existing one"
            if model.repo_option
            else "check its name"
        )
        return (
            f"Hugging Face repository '{repo}' does not exist: {fix} "
            "(a private repository also needs the add-on's hf_token option)"
        )
    if isinstance(err, RevisionNotFoundError):
        return f"Revision '{model.revision}' does not exist in '{repo}'"
    if isinstance(err, EntryNotFoundError):
        fix = (
            f"set the add-on's {model.file_option} option to"
            if model.file_option
            else "check the name against"
        )
        return (
            f"File '{model.filename}' does not exist in Hugging Face repository "
            f"'{repo}': {fix} a file listed on the repository's Files page"
        )
    return f"Cannot reach Hugging Face for {repo}/{model.filename}: {err}"


def _download(
    url: str, size: int | None, dest: Path, model: ModelFile, token: str | None
) -> None:
    """Stream `url` into `<dest>.part`, resuming what is there, then move it in."""
    source = f"{model.repo_id}/{model.filename}"
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()  # left over from another version of the file
        have = 0
    if size is not None:
        free = shutil.disk_usage(dest.parent).free
        if size - have + DISK_MARGIN > free:
            msg = (
                f"Not enough disk space for {source}: it needs "
                f"{human_size(size - have)} more, {human_size(free)} is free in "
                f"{dest.parent}. Free some space (or pick a smaller model) and "
                "restart the add-on."
            )
            raise FetchError(msg)
    total = human_size(size) if size is not None else "size unknown"
    if have:
        _LOGGER.info("Resuming %s at %s of %s", source, human_size(have), total)
    else:
        _LOGGER.info("Downloading %s (%s) to %s", source, total, dest)
    try:
        with part.open("ab") as out:
            http_get(
                url,
                out,
                resume_size=have,
                headers=build_hf_headers(token=token),
                expected_size=size,
                displayed_filename=dest.name,
                tqdm_class=cast(Any, LogProgress),
            )
    except OSError as err:
        if err.errno == errno.ENOSPC:
            msg = (
                f"The disk is full while downloading {source} to {dest.parent}: "
                "free some space and restart the add-on; the download resumes "
                "where it stopped."
            )
            raise FetchError(msg) from err
        raise FetchError(f"Download of {source} failed: {err}. {_RESTART}") from err
    except Exception as err:
        raise FetchError(f"Download of {source} failed: {err}. {_RESTART}") from err
    part.replace(dest)


def main(argv: list[str] | None = None) -> int:
    """Fetch one file from the command line and print its path (for debugging)."""
    import argparse  # noqa: PLC0415 - only the command line needs it

    parser = argparse.ArgumentParser(description="Fetch a model file from Hugging Face")
    parser.add_argument("repo_id")
    parser.add_argument("filename")
    parser.add_argument("--models-dir", type=Path, default=Path("/config/models"))
    parser.add_argument("--revision", default="main")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        path = ensure_file(
            ModelFile(args.repo_id, args.filename, args.revision),
            args.models_dir,
            token=os.environ.get("HF_TOKEN") or None,
            endpoint=os.environ.get("HF_ENDPOINT") or None,
        )
    except FetchError as err:
        _LOGGER.error("%s", err)  # noqa: TRY400 - the message is the whole story
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

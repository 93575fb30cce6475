"""Atomic, self-describing artefacts: every file appears complete or not at all.

Each writer goes to a temporary file in the destination folder, fsyncs it, then renames
it over the destination (``os.replace`` is atomic on POSIX), so a killed stage never
leaves a half-written file for DVC to cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator


class DataError(ValueError):
    """A data file that is missing, corrupt or inconsistent; the message names the file."""


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path, lazy: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on success replace ``path`` with it. The
    swap of an existing folder (two renames) runs with SIGINT / SIGTERM held back, so an
    interruption leaves the old folder or the new one in place, never neither. With ``lazy``
    the folder is only named, not made: the writer makes it when it starts writing (a stage
    killed before that leaves nothing behind)."""
    path = Path(path)
    if lazy:    # a name no other writer uses; the folder (and its parent) appear with the first file
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = path.with_name(f".{path.name}.old")
    try:
        yield tmp
        tmp.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o777 & ~_umask())
        with _signals_held():
            if path.exists():
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold back SIGINT and SIGTERM (POSIX) until the block is done; they arrive right after."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def check_env(what: str | Path, saved: Any, expected: dict, rerun: str) -> None:
    """Refuse an artefact made for another environment than params.yaml's (names the file)."""
    if saved != expected:
        raise DataError(f"{what}: made for another env {saved}, but params.yaml has env {expected}; rerun {rerun}")


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(*objs: object) -> str:
    """A short hash identifying a run's inputs (resume checkpoints carry it)."""
    return hashlib.sha256(json.dumps(objs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    """Atomically write a text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write pretty JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Read JSON, naming the file in any error."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing (did the stage that writes it run?)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: corrupt JSON ({e})") from None


def save_torch(path: str | Path, obj: dict) -> None:
    """Atomically save a checkpoint made of tensors and plain data (loadable with weights_only).

    Saved through an open file, not a path: ``torch.save`` to a path stores the file's stem as
    the zip archive's inner folder, so saving to a random temp name would make equal tensors
    different bytes on every run (and defeat DVC's caching downstream). Through a file object the
    folder is always ``archive/`` and the entries carry a fixed date: equal content, equal bytes.
    Nothing is buffered in memory (a source checkpoint holds the whole history so far).
    """
    import torch  # lazily: stages validate params before paying for the torch import

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def load_torch(path: str | Path, map_location: Any = "cpu") -> dict:
    """Load a checkpoint safely (``weights_only=True``: no pickle code runs), after checking its
    content against the CRC-32 that the zip archive stores for every member at save time (torch
    itself does not: flipped bytes in a tensor would load as other numbers)."""
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint missing")
    if not zipfile.is_zipfile(path):   # torch checkpoints are zip archives
        raise DataError(f"{path}: not a checkpoint (damaged, truncated or another kind of file)")
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:   # a damaged header or directory
        raise DataError(f"{path}: damaged checkpoint ({type(e).__name__}: {e})") from None
    if bad is not None:
        raise DataError(f"{path}: damaged checkpoint: {bad} does not match the checksum written when it was saved")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many kinds; never pass on its advice to load unsafely
        raise DataError(f"{path}: does not load as tensors and plain data (foreign objects in it, or damage); "
                        f"refused ({type(e).__name__})") from None


def load_resume(path: Path | None, fp: str, map_location: Any = "cpu") -> tuple[dict | None, str]:
    """A resume checkpoint at ``path`` if it belongs to the run with fingerprint ``fp``, and a
    line saying what was done with it. An unreadable or foreign checkpoint is never fatal:
    resuming is an optimisation, so the run starts over (and overwrites it)."""
    if path is None or not Path(path).exists():
        return None, ""
    try:
        ckpt = load_torch(path, map_location)
    except DataError as e:
        return None, f"ignoring the resume checkpoint: {e}; starting from scratch (it will be overwritten)"
    if ckpt.get("fingerprint") != fp:
        return None, f"ignoring {path}: it belongs to other params or data; starting from scratch"
    return ckpt, f"resuming from {path}"

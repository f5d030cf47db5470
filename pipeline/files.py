"""Atomic file writes: a file is either its old self or complete, never half written.

Every writer in animecolor (images, JSON metrics, checkpoints, model files, downloads) goes
through `atomic_path`: write to a temporary file in the same folder, flush it to disk, then
rename it over the target. The new file gets the mode the user's umask gives any new file (not
mkstemp's private 0600).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; when the block ends without error it is fsynced and
    renamed over `path`, else removed. Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def publish(tmp: str | Path, path: str | Path) -> None:
    """The last step of every atomic write: fsync `tmp`, give it the umask's mode, rename it to `path`."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def write_bytes_atomic(path: str | Path, payload: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)

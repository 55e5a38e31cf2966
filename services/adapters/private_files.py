"""Private local state: folders codex creates are 0700 and files it writes 0600, whatever the umask.

An existing folder is never chmod-ed (neither loosened nor tightened): it belongs to whoever made it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` and any missing parents as 0700 (exactly, not masked by the umask); existing
    folders keep their mode. Returns `path`."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # made by a concurrent process meanwhile: it made it 0700 too
            continue
        os.chmod(folder, PRIVATE_DIR)  # mkdir's mode is masked by the umask; ours is not
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (a temporary file renamed over it) with mode 0600: readers
    never see half a file, and writing the same name twice leaves one file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), PRIVATE_FILE)  # O_CREAT's mode is masked by the umask too
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise

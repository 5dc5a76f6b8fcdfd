"""Files replaced whole or not at all, for every layer that stores something on disk.

A write goes to a hidden temp file beside its target (``.<name>.<random>.tmp``:
the same folder, so the rename never crosses a filesystem), is flushed and
fsynced, and is renamed over the target with ``os.replace``, which POSIX makes
atomic: a reader sees the old file or the new one, never part of either. A
write that fails removes its temp file and leaves the old file as it was.

The rename itself is durable only once its folder is fsynced: ``sync_folder``
does that where losing the rename to a power cut would matter (a champion
pointer); a cache entry or a heartbeat lost that way is rewritten anyway.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

NEW_FILE_MODE = 0o644  # what a plain write leaves under the usual umask 022


@contextmanager
def replaced_whole(path: str | os.PathLike[str], *, sync_folder: bool = False) -> Iterator[BinaryIO]:
    """A binary handle whose content replaces ``path`` when the block ends without an exception.

    The folder of ``path`` must exist. On an exception the temp file is removed,
    ``path`` is untouched and the exception propagates.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _mode_of(target))
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        if sync_folder:
            fsync_folder(target.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_whole(path: str | os.PathLike[str], content: bytes | str, *, sync_folder: bool = False) -> None:
    """Replace ``path`` by ``content`` (text is written as UTF-8) whole or not at all."""
    data = content.encode() if isinstance(content, str) else content
    with replaced_whole(path, sync_folder=sync_folder) as handle:
        handle.write(data)


def _mode_of(target: Path) -> int:
    """The permission bits ``target`` has, or 0644 if it does not exist."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return NEW_FILE_MODE


def fsync_folder(path: str | os.PathLike[str]) -> None:
    """Make the renames and removals already done in the folder ``path`` survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

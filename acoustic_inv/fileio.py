"""Atomic file writes: nothing a user already has is left half-written.

Every writer here puts its bytes into a temporary file in the target's folder, flushes them to disk,
gives the file the permissions an ordinary new file gets under the current umask (``mkstemp`` makes
its files private, mode 0600, which would hide datasets and models from a user's colleagues), and
renames it over the target. A crash or a kill at any moment leaves either the old file or the new
one, never a mix; the temporary file is removed when the write fails.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_netcdf", "atomic_write_text",
           "default_file_mode"]


def default_file_mode() -> int:
    """Permissions of a new ordinary file under the current umask (e.g. 0o644 for umask 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = ".tmp", fsync: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; moved onto ``path`` when the block succeeds.

    Args:
        path: The file to create or replace; its folder is created if missing.
        suffix: Suffix of the temporary name (writers that infer the format from it, such as
            matplotlib's ``savefig``, need the target's own).
        fsync: Flush the file to disk before the rename.

    Yields:
        The temporary path (an empty file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | list[bytes] | tuple[bytes, ...]) -> Path:
    """Writes ``data`` (bytes, or a sequence of byte strings written in order) atomically; returns the path."""
    parts = [data] if isinstance(data, (bytes, bytearray, memoryview)) else list(data)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        for part in parts:
            handle.write(part)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Writes UTF-8 text atomically; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Writes ``obj`` as indented JSON (with a final newline) atomically; returns the path."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_netcdf(path: str | os.PathLike[str], root: "xr.Dataset",
                        groups: Mapping[str, "xr.Dataset"] | None = None) -> Path:
    """Writes a netCDF-4 file (root dataset plus named groups) atomically; returns the path."""
    with atomic_path(path) as tmp:
        root.to_netcdf(tmp, mode="w", engine="netcdf4", format="NETCDF4")
        for name, group in (groups or {}).items():
            group.to_netcdf(tmp, mode="a", group=name, engine="netcdf4", format="NETCDF4")
    return Path(path)

"""Atomic writes: ordinary permissions, the old file kept on failure, no temporary files left."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from acoustic_inv.fileio import (atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_netcdf,
                                 atomic_write_text, default_file_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_get_the_umask_default_not_mkstemp_private_mode(tmp_path: Path, umask_022) -> None:
    assert default_file_mode() == 0o644
    written = [
        atomic_write_bytes(tmp_path / "a.bin", [b"ab", b"cd"]),
        atomic_write_text(tmp_path / "sub" / "b.txt", "x"),
        atomic_write_json(tmp_path / "c.json", {"k": 1}),
        atomic_write_netcdf(tmp_path / "d.nc", xr.Dataset({"v": ("n", np.arange(3.0))}),
                            {"g": xr.Dataset({"w": ("m", np.ones(2))})}),
    ]
    assert [_mode(p) for p in written] == [0o644] * 4
    assert (tmp_path / "a.bin").read_bytes() == b"abcd"
    assert (tmp_path / "c.json").read_text() == '{\n  "k": 1\n}\n'
    with xr.open_dataset(tmp_path / "d.nc", group="g") as group:
        assert group["w"].values.tolist() == [1.0, 1.0]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.name.startswith(".")) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk on fire")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_the_temporary_name_keeps_a_requested_suffix(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "fig.png", suffix=".png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.name.startswith(".fig.png.")
        tmp.write_bytes(b"png")
    assert (tmp_path / "fig.png").read_bytes() == b"png"

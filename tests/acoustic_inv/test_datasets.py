"""Tests of acoustic_inv.datasets: layout, determinism across workers, resume, failures, splits, Dask."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import scenario_texts
from acoustic_inv.datasets import (
    chunk_path,
    dataset_info,
    generate,
    iter_chunks,
    open_dataset,
    read_failures,
    read_meta,
    split_dataset,
)
from acoustic_inv.errors import ConfigError, DataError
from acoustic_inv.scenario import EngineConfig, replace_simulation, scenario_from_text
from acoustic_inv.simulation import Simulator
from fake_engine import fake_pressure

SCENARIO = scenario_from_text(scenario_texts.PEKERIS, source="pekeris-test.toml", default_name="pekeris-test")


def _make(path: Path, n: int = 10, **kwargs) -> Path:
    kwargs.setdefault("runner", fake_pressure)
    kwargs.setdefault("progress", False)
    generate(kwargs.pop("scenario", SCENARIO), path, n, **kwargs)
    return path


def _values(path: Path) -> dict[str, np.ndarray]:
    ds = open_dataset(path)
    return {name: ds[name].values for name in ("theta", "x", "pressure", "snr_db", "sample")}


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_layout_meta_and_chunk_contents(tmp_path: Path) -> None:
    path = _make(tmp_path / "ds", 10, seed=5)
    assert sorted(p.name for p in (path / "chunks").iterdir()) == [
        "chunk-000000.nc", "chunk-000001.nc", "chunk-000002.nc"]
    assert (path / "scenario.toml").read_text() == SCENARIO.text
    meta = json.loads((path / "meta.json").read_text())
    first = meta["params"][0]
    assert {k: first[k] for k in ("name", "units", "low", "high")} == {
        "name": "source_range_m", "units": "m", "low": 1000.0, "high": 5000.0}
    assert (meta["scenario"], meta["seed"], meta["n_samples"], meta["chunk_size"]) == ("pekeris-test", 5, 10, 4)
    assert meta["n_features"] == 2 * (2 * 4 - 1)
    assert meta["status"] == "complete" and meta["n_failed"] == 0

    with xr.open_dataset(chunk_path(path, 1)) as chunk:
        assert chunk["theta"].dtype == np.float64 and chunk["theta"].dims == ("sample", "param")
        assert chunk["x"].dtype == np.float32 and chunk["x"].dims == ("sample", "feature")
        assert chunk["pressure_real"].dims == ("sample", "freq", "receiver")
        assert list(chunk["sample"].values) == [4, 5, 6, 7]
        assert list(chunk["param"].values) == list(SCENARIO.prior.names)
        assert list(chunk["param_units"].values) == ["m", "m", "m/s"]
        assert chunk["theta"].attrs["units"] == "m, m, m/s"
        for name in ("theta", "x", "pressure_real", "pressure_imag", "snr_db", "freq", "receiver"):
            assert "long_name" in chunk[name].attrs, name
        for name in ("x", "pressure_real", "snr_db", "freq", "receiver"):
            assert "units" in chunk[name].attrs, name
        assert chunk.attrs["scenario"] == SCENARIO.text and chunk.attrs["seed"] == 5
        assert "pelagic" in json.loads(chunk.attrs["versions"])

    ds = open_dataset(path)
    assert ds.sizes["sample"] == 10 and ds["pressure"].dtype == np.complex128
    expected = Simulator(SCENARIO, fake_pressure).simulate(5, range(10))
    np.testing.assert_array_equal(ds["theta"].values, expected.theta)
    np.testing.assert_array_equal(ds["x"].values, expected.x)
    np.testing.assert_array_equal(ds["pressure"].values, expected.pressure)
    chunks = list(iter_chunks(path))
    assert [c.sizes["sample"] for c in chunks] == [4, 4, 2]
    assert chunks[2]["pressure"].dtype == np.complex128


def test_workers_and_chunk_size_do_not_change_the_values(tmp_path: Path) -> None:
    one = _values(_make(tmp_path / "one", 11, seed=2))
    two = _values(_make(tmp_path / "two", 11, seed=2, workers=2, chunk_size=3))
    _assert_same(one, two)


def test_resume_continues_and_never_rewrites_finished_chunks(tmp_path: Path) -> None:
    path = _make(tmp_path / "ds", 10, seed=1)
    reference = _values(path)
    # Make it look like a run killed while writing chunk 1: meta still 'running', chunk 1 missing,
    # a half-written temporary file left behind.
    meta = read_meta(path)
    meta["status"] = "running"
    (path / "meta.json").write_text(json.dumps(meta))
    chunk_path(path, 1).unlink()
    (path / "chunks" / ".chunk-000001.nc.abc.tmp").write_bytes(b"partial")
    kept = {i: os.stat(chunk_path(path, i)).st_ino for i in (0, 2)}
    report = generate(SCENARIO, path, 10, seed=1, runner=fake_pressure, progress=False)
    assert (report.chunks_written, report.chunks_skipped, report.samples_computed) == (1, 2, 4)
    assert {i: os.stat(chunk_path(path, i)).st_ino for i in (0, 2)} == kept
    assert not list((path / "chunks").glob(".*.tmp"))
    _assert_same(reference, _values(path))


def test_finished_dataset_is_not_overwritten_without_force(tmp_path: Path) -> None:
    path = _make(tmp_path / "ds", 6, seed=1)
    with pytest.raises(DataError, match="is a finished dataset .* pass --force"):
        _make(path, 6, seed=1)
    _make(path, 6, seed=4, force=True)
    assert read_meta(path)["seed"] == 4


@pytest.mark.parametrize("change, message", [
    ({"seed": 2}, "seed = 1, but this run asks for seed = 2"),
    ({"n": 8}, "n_samples = 6, but this run asks for n_samples = 8"),
    ({"chunk_size": 3}, "chunk_size = 4, but this run asks for chunk_size = 3"),
    ({"scenario": dataclasses.replace(SCENARIO, name="other")}, "made with scenario 'pekeris-test', not scenario 'other'"),
    ({"scenario": scenario_from_text(SCENARIO.text + "\n# edited\n", default_name="pekeris-test")},
     "a different text of the scenario"),
])
def test_resuming_with_other_settings_names_the_mismatch(tmp_path: Path, change: dict, message: str) -> None:
    path = _make(tmp_path / "ds", 6, seed=1)
    meta = read_meta(path)
    meta["status"] = "running"
    (path / "meta.json").write_text(json.dumps(meta))
    kwargs = {"seed": 1, **change}
    n = kwargs.pop("n", 6)
    with pytest.raises(DataError, match=message):
        _make(path, n, **kwargs)


def test_refuses_a_directory_that_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not empty and is not an acoustic-inv dataset"):
        _make(tmp_path / "mine", 4, force=True)
    assert (tmp_path / "mine" / "notes.txt").exists()
    with pytest.raises(DataError, match="not an acoustic-inv dataset"):
        open_dataset(tmp_path / "mine")


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="n_samples = 0"):
        _make(tmp_path / "a", 0)
    with pytest.raises(ConfigError, match="workers = 0"):
        _make(tmp_path / "a", 3, workers=0)
    reuse = replace_simulation(SCENARIO, environment_reuse=3)
    with pytest.raises(ConfigError, match="chunk_size = 4 is not a multiple"):
        _make(tmp_path / "a", 3, scenario=reuse)


def test_failures_are_recorded_counted_and_reported(tmp_path: Path) -> None:
    failing = dataclasses.replace(SCENARIO, engine=EngineConfig("kraken", (("fail_range_above_m", 3000.0),)))
    path = _make(tmp_path / "ds", 20, seed=0, scenario=failing)
    expected = Simulator(failing, fake_pressure).simulate(0, range(20))
    n_failed = expected.n_failed
    assert 0 < n_failed < 20
    meta = read_meta(path)
    assert (meta["n_failed"], meta["n_ok"]) == (n_failed, 20 - n_failed)
    failures = read_failures(path)
    np.testing.assert_array_equal(failures["failure"].values, np.flatnonzero(~expected.ok))
    np.testing.assert_array_equal(failures["theta"].values, expected.theta[~expected.ok])
    assert all("fake failure at range" in e for e in failures["error"].values)
    ds = open_dataset(path)
    assert ds.sizes["sample"] == 20 - n_failed and ds.attrs["n_failed"] == n_failed
    info = dataset_info(path)
    assert (info.n_ok, info.n_failed, info.failure_counts) == (20 - n_failed, n_failed, {"EngineError": n_failed})
    assert f"{n_failed} failed" in info.format()


def test_unfinished_dataset_opens_only_when_allowed(tmp_path: Path) -> None:
    path = _make(tmp_path / "ds", 10)
    meta = read_meta(path)
    meta["status"] = "running"
    (path / "meta.json").write_text(json.dumps(meta))
    chunk_path(path, 2).unlink()
    with pytest.raises(DataError, match="has not finished .* run the same simulate command again"):
        open_dataset(path)
    assert open_dataset(path, allow_incomplete=True).sizes["sample"] == 8
    info = dataset_info(path)
    assert not info.complete and "2 of 3 chunks" in info.format()


def test_info_reports_ranges(tmp_path: Path) -> None:
    path = _make(tmp_path / "ds", 10)
    info = dataset_info(path)
    theta = open_dataset(path)["theta"].values
    np.testing.assert_array_equal(info.observed_low, theta.min(axis=0))
    text = info.format()
    assert "pekeris-test" in text and "source_range_m" in text and "10 ok, 0 failed" in text


def test_split_is_a_disjoint_cover(tmp_path: Path) -> None:
    path = _make(tmp_path / "ds", 20)
    parts = split_dataset(path, [0.6, 0.2, 0.2], seed=3)
    assert [p.name for p in parts] == ["ds-train", "ds-val", "ds-test"]
    samples = [open_dataset(p)["sample"].values for p in parts]
    assert [len(s) for s in samples] == [12, 4, 4]
    assert sorted(np.concatenate(samples).tolist()) == list(range(20))
    full = open_dataset(path)
    val = open_dataset(parts[1])
    np.testing.assert_array_equal(val["x"].values, full["x"].sel(sample=val["sample"]).values)
    np.testing.assert_array_equal(val["pressure"].values, full["pressure"].sel(sample=val["sample"]).values)
    meta = read_meta(parts[1])
    assert meta["split"]["name"] == "val" and meta["n_samples"] == 4 and meta["status"] == "complete"
    with pytest.raises(DataError, match="already exists; pass --force"):
        split_dataset(path, [0.6, 0.2, 0.2])
    split_dataset(path, [0.6, 0.2, 0.2], seed=4, force=True)
    with pytest.raises(ConfigError, match="summing to 1"):
        split_dataset(path, [0.6, 0.3])
    with pytest.raises(ConfigError, match="one name per fraction"):
        split_dataset(path, [0.5, 0.5], names=["a"])


def test_split_keeps_environment_groups_together(tmp_path: Path) -> None:
    scenario = replace_simulation(SCENARIO, environment_reuse=2)
    path = _make(tmp_path / "ds", 16, scenario=scenario)
    parts = split_dataset(path, [0.5, 0.5], seed=0)
    for part in parts:
        groups = open_dataset(part)["sample"].values // 2
        assert np.all(np.bincount(groups)[np.unique(groups)] == 2)


def test_dask_cluster_gives_the_local_pool_data(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    local = _values(_make(tmp_path / "local", 12, seed=9, runner=None, workers=2, chunk_size=3))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=40) as cluster:
        _make(tmp_path / "dask", 12, seed=9, runner=None, chunk_size=3, scheduler=cluster.scheduler_address)
    _assert_same(local, _values(tmp_path / "dask"))

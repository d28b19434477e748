"""Data sources: splits, shuffles, chunked reading and its errors, re-batching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from acoustic_inv.errors import DataError
from acoustic_inv.sources import ChunkedSource, InMemorySource, ParamInfo, rebatch

PARAMS = [{"name": "c_sed", "units": "m/s", "low": 1500.0, "high": 1800.0}, {"name": "depth", "units": "m", "low": 50.0, "high": 150.0}]


def write_chunks(root: Path, sizes: list[int], n_features: int = 3, seed: int = 0) -> Path:
    """A chunked dataset whose first feature is the global row index (to track rows)."""
    (root / "chunks").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    start = 0
    for k, size in enumerate(sizes):
        theta = np.column_stack([rng.uniform(1500, 1800, size), rng.uniform(50, 150, size)])
        x = rng.normal(size=(size, n_features)).astype(np.float32)
        x[:, 0] = np.arange(start, start + size)
        start += size
        ds = xr.Dataset(
            {
                "theta": (("sample", "param"), theta, {"units": "m/s, m", "long_name": "parameters"}),
                "x": (("sample", "feature"), x, {"units": "1", "long_name": "features"}),
            },
            coords={"param": [p["name"] for p in PARAMS]},
        )
        ds.to_netcdf(root / "chunks" / f"chunk-{k:06d}.nc")
    (root / "meta.json").write_text(json.dumps({"params": PARAMS, "n_features": n_features}))
    return root


def rows(blocks) -> np.ndarray:
    return np.concatenate([x[:, 0] for _, x in blocks]).astype(int)


def test_chunked_split_is_stable_disjoint_and_complete(tmp_path: Path) -> None:
    source = ChunkedSource(write_chunks(tmp_path / "d", [40, 35, 25]), buffer_chunks=2)
    assert source.n_params == 2 and source.n_features == 3
    assert source.params[0] == ParamInfo("c_sed", "m/s", 1500.0, 1800.0)
    val = rows(source.blocks("val", val_fraction=0.2, seed=1))
    train_epoch0 = rows(source.blocks("train", val_fraction=0.2, seed=1, epoch=0))
    train_epoch1 = rows(source.blocks("train", val_fraction=0.2, seed=1, epoch=1))
    assert len(val) == 8 + 7 + 5
    assert set(val).isdisjoint(train_epoch0) and sorted(np.concatenate([val, train_epoch0])) == list(range(100))
    assert sorted(train_epoch0) == sorted(train_epoch1) and list(train_epoch0) != list(train_epoch1), "reshuffled"
    assert list(train_epoch0) == list(rows(source.blocks("train", val_fraction=0.2, seed=1, epoch=0))), "seeded"
    assert set(rows(source.blocks("val", val_fraction=0.2, seed=2))) != set(val), "the split follows the seed"
    theta, x = next(source.blocks("train", val_fraction=0.2, seed=1))
    assert theta.dtype == np.float64 and x.dtype == np.float32


def test_chunked_shuffle_mixes_within_buffers(tmp_path: Path) -> None:
    source = ChunkedSource(write_chunks(tmp_path / "d", [10] * 6), buffer_chunks=3)
    blocks = list(source.blocks("train", val_fraction=0.0, seed=0, epoch=3))
    assert len(blocks) == 2
    chunk_of_rows = [set(x[:, 0].astype(int) // 10) for _, x in blocks]
    assert all(len(chunks) == 3 for chunks in chunk_of_rows)
    first = blocks[0][1][:, 0].astype(int)
    assert list(first) != sorted(first), "rows are shuffled within a buffer"


def test_in_memory_source(tmp_path: Path) -> None:
    theta = np.arange(20.0).reshape(10, 2)
    x = np.arange(10.0)[:, None]
    source = InMemorySource(theta, x)
    assert [p.name for p in source.params] == ["theta_0", "theta_1"] and source.description == "in-memory arrays"
    val = rows(source.blocks("val", val_fraction=0.3, seed=0))
    train = rows(source.blocks("train", val_fraction=0.3, seed=0, epoch=0))
    assert len(val) == 3 and sorted(np.concatenate([val, train])) == list(range(10))
    with pytest.raises(DataError, match="same n"):
        InMemorySource(theta, x[:5])
    with pytest.raises(DataError, match="descriptions"):
        InMemorySource(theta, x, [ParamInfo("a", "m")])
    with pytest.raises(ValueError, match="split"):
        next(source.blocks("test", val_fraction=0.1, seed=0))
    with pytest.raises(ValueError, match="val_fraction"):
        next(source.blocks("val", val_fraction=1.0, seed=0))


def test_rebatch_carries_remainders() -> None:
    blocks = [(np.zeros((n, 1)), np.arange(n, dtype=np.float32)[:, None]) for n in (5, 3, 9)]
    sizes = [len(t) for t, _ in rebatch(iter(blocks), 4, drop_last=True)]
    assert sizes == [4, 4, 4, 4]
    sizes = [len(t) for t, _ in rebatch(iter(blocks), 4, drop_last=False)]
    assert sizes == [4, 4, 4, 4, 1]
    assert [len(t) for t, _ in rebatch(iter(blocks[:1]), 8, drop_last=True)] == [5], "a lone short batch is kept"


def test_chunked_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="meta.json: not found"):
        ChunkedSource(tmp_path)
    root = write_chunks(tmp_path / "d", [5])
    (root / "meta.json").write_text(json.dumps({"params": [{"name": "a"}], "n_features": 3}))
    with pytest.raises(DataError, match="meta.json: expected 'params'"):
        ChunkedSource(root)
    (root / "meta.json").write_text(json.dumps({"params": PARAMS[::-1], "n_features": 3}))
    with pytest.raises(DataError, match=r"chunk-000000.nc: param coordinate"):
        next(ChunkedSource(root).blocks("train", val_fraction=0.1, seed=0))
    (root / "meta.json").write_text(json.dumps({"params": PARAMS, "n_features": 4}))
    with pytest.raises(DataError, match=r"chunk-000000.nc: .*meta.json says"):
        next(ChunkedSource(root).blocks("train", val_fraction=0.1, seed=0))
    (root / "meta.json").write_text(json.dumps({"params": PARAMS, "n_features": 3}))
    (root / "chunks" / "chunk-000001.nc").write_text("not netcdf")
    with pytest.raises(DataError, match=r"chunk-000001.nc: cannot read"):
        list(ChunkedSource(root).blocks("train", val_fraction=0.1, seed=0))
    (root / "meta.json").write_text(json.dumps({"params": PARAMS, "n_features": 3, "status": "running"}))
    with pytest.raises(DataError, match="still being generated"):
        ChunkedSource(root)
    empty = tmp_path / "empty"
    (empty / "chunks").mkdir(parents=True)
    (empty / "meta.json").write_text(json.dumps({"params": PARAMS, "n_features": 3}))
    with pytest.raises(DataError, match="no chunk"):
        ChunkedSource(empty)


def _generated(tmp_path: Path, reuse: int = 1, n: int = 40):
    import scenario_texts
    from fake_engine import fake_pressure

    from acoustic_inv.datasets import generate
    from acoustic_inv.scenario import scenario_from_text

    text = scenario_texts.PEKERIS.replace("chunk_size = 4", f"chunk_size = {4 * reuse}\nenvironment_reuse = {reuse}")
    scenario = scenario_from_text(text)
    assert scenario.simulation.environment_reuse == reuse
    path = scenario_texts.write(tmp_path, text)
    generate(path, tmp_path / "data", n, seed=0, progress=False, runner=fake_pressure)
    return tmp_path / "data"


def test_renoise_draws_fresh_noise_each_epoch_and_keeps_validation_fixed(tmp_path: Path) -> None:
    from acoustic_inv.sources import ChunkedSource

    data = _generated(tmp_path)
    plain = ChunkedSource(data)
    noisy = ChunkedSource(data, renoise=True)

    def rows(source, split, epoch):
        blocks = list(source.blocks(split, val_fraction=0.25, seed=0, epoch=epoch))
        theta = np.concatenate([b[0] for b in blocks])
        x = np.concatenate([b[1] for b in blocks])
        order = np.lexsort(theta.T)
        return theta[order], x[order]

    t0, x0 = rows(plain, "train", 0)
    t1, x1 = rows(noisy, "train", 0)
    t2, x2 = rows(noisy, "train", 1)
    np.testing.assert_array_equal(t0, t1)           # same samples, same parameters
    assert not np.allclose(x0, x1) and not np.allclose(x1, x2)  # new noise each epoch
    np.testing.assert_array_equal(rows(noisy, "train", 1)[1], x2)  # reproducible for a seed and epoch
    # Unit-pressure features: each tone's vector keeps unit norm whatever the noise.
    per_tone = x1.reshape(len(x1), 2, -1)
    assert np.allclose(np.sum(per_tone**2, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(rows(noisy, "val", None)[1], rows(plain, "val", None)[1])


def test_validation_keeps_environment_groups_together(tmp_path: Path) -> None:

    from acoustic_inv.sources import ChunkedSource

    data = _generated(tmp_path, reuse=4, n=80)
    source = ChunkedSource(data)
    envs = {}
    for split in ("train", "val"):
        theta = np.concatenate([b[0] for b in source.blocks(split, val_fraction=0.3, seed=0)])
        envs[split] = {tuple(np.round(t[1:], 9)) for t in theta}  # water depth, bottom speed
    assert envs["val"] and envs["train"]
    assert not envs["val"] & envs["train"]


def _rebuilt_features(data: Path, theta_rows: np.ndarray, noise: np.ndarray, source) -> np.ndarray:
    """Features rebuilt from each row's stored noise-free pressure and its noise variables."""
    import xarray as xr
    from scipy import special

    from acoustic_inv.datasets import dataset_scenario
    from acoustic_inv.observation import ObservationModel, noise_variance

    scenario = dataset_scenario(data)
    observation = ObservationModel.from_scenario(scenario)
    with xr.open_mfdataset(sorted((data / "chunks").glob("*.nc")), combine="nested", concat_dim="sample") as ds:
        theta_all = ds["theta"].values
        pressure_all = ds["pressure_real"].values + 1j * ds["pressure_imag"].values
    out = []
    shape = (observation.n_freq, observation.n_receiver)
    for theta, z in zip(theta_rows, noise):
        row = int(np.flatnonzero(np.all(theta_all == theta, axis=1))[0])
        p = pressure_all[row]
        snr_db = float(scenario.noise.snr_db.ppf(special.ndtr(z[0])))
        real = z[1:1 + shape[0] * shape[1]].reshape(shape)
        imag = z[1 + shape[0] * shape[1]:].reshape(shape)
        std = np.sqrt(noise_variance(p, snr_db) / 2.0)[..., None]
        out.append(observation.features_from_pressure(p + std * (real + 1j * imag)))
    return np.asarray(out)


def test_simulator_noise_of_a_dataset_rebuilds_its_features(tmp_path: Path) -> None:
    from acoustic_inv.sources import ChunkedSource

    data = _generated(tmp_path, reuse=2, n=24)
    assert ChunkedSource(data).noise_dim == 0
    source = ChunkedSource(data, with_noise=True)
    assert source.noise_dim == 1 + 2 * 2 * 4  # 2 tones x 4 receivers in the scenario
    for split, epoch in (("train", 3), ("val", None)):
        blocks = list(source.blocks_with_noise(split, val_fraction=0.25, seed=0, epoch=epoch))
        theta = np.concatenate([b[0] for b in blocks])
        x = np.concatenate([b[1] for b in blocks])
        noise = np.concatenate([b[2] for b in blocks])
        assert noise.shape == (len(theta), source.noise_dim)
        np.testing.assert_allclose(_rebuilt_features(data, theta, noise, source), x, atol=2e-6)
        # the same rows and order as blocks()
        plain = np.concatenate([b[0] for b in source.blocks(split, val_fraction=0.25, seed=0, epoch=epoch)])
        np.testing.assert_array_equal(plain, theta)


def test_renoised_rows_come_with_the_noise_they_were_given(tmp_path: Path) -> None:
    from acoustic_inv.sources import ChunkedSource

    data = _generated(tmp_path)
    source = ChunkedSource(data, renoise=True, with_noise=True)
    blocks = list(source.blocks_with_noise("train", val_fraction=0.25, seed=0, epoch=2))
    theta = np.concatenate([b[0] for b in blocks])
    x = np.concatenate([b[1] for b in blocks])
    noise = np.concatenate([b[2] for b in blocks])
    stored = ChunkedSource(data, with_noise=True)
    stored_x = np.concatenate([b[1] for b in stored.blocks_with_noise("train", val_fraction=0.25, seed=0, epoch=2)])
    assert not np.allclose(x, stored_x)  # fresh noise
    np.testing.assert_allclose(_rebuilt_features(data, theta, noise, source), x, atol=2e-6)


def test_a_theta_pad_inn_trains_on_a_dataset_directory(tmp_path: Path) -> None:
    import contextlib
    import io

    import torch

    from acoustic_inv.checkpoint import load_model
    from acoustic_inv.cli import main

    data = _generated(tmp_path, n=60)
    config = tmp_path / "inn.toml"
    config.write_text('architecture = "inn"\nnoise_mode = "theta_pad"\nn_blocks = 2\nhidden_width = 16\n'
                      'subnet_depth = 1\nepochs = 2\nbatch_size = 16\nval_fraction = 0.25\n')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["train", "--data", str(data), "--config", str(config), "--out", str(tmp_path / "m.pt"),
                         "--quiet"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    model = load_model(tmp_path / "m.pt")
    assert model.network.n_noise == 1 + 2 * 2 * 4
    assert model.sample(np.zeros(model.n_features), 5, seed=0).shape == (5, 3)

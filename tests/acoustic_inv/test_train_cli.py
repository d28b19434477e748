"""``acoustic-inv train`` end to end on a tiny chunked dataset the test writes itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from acoustic_inv.checkpoint import load_model
from acoustic_inv.cli import main

PARAMS = [{"name": "c_sed", "units": "m/s", "low": 1500.0, "high": 1800.0}, {"name": "depth", "units": "m", "low": 50.0, "high": 150.0}]


@pytest.fixture(autouse=True)
def _one_thread():
    """Small networks: one thread is fastest, and immune to oversubscription on a shared CI box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_dataset(root: Path, n_chunks: int = 3, per_chunk: int = 80) -> Path:
    """The chunked layout of acoustic_inv.datasets: chunks/chunk-NNNNNN.nc plus meta.json."""
    (root / "chunks").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(n_chunks):
        theta = np.column_stack([rng.uniform(1500, 1800, per_chunk), rng.uniform(50, 150, per_chunk)])
        x = np.column_stack([theta[:, 0] / 100 + theta[:, 1] / 50, np.sin(theta[:, 1] / 30), theta[:, 0] / 300])
        x = (x + 0.05 * rng.normal(size=x.shape)).astype(np.float32)
        xr.Dataset(
            {
                "theta": (("sample", "param"), theta, {"units": "m/s, m", "long_name": "parameters"}),
                "x": (("sample", "feature"), x, {"units": "1", "long_name": "network features"}),
            },
            coords={"param": [p["name"] for p in PARAMS]},
        ).to_netcdf(root / "chunks" / f"chunk-{k:06d}.nc")
    (root / "meta.json").write_text(json.dumps({"params": PARAMS, "n_features": 3}))
    return root


def test_train_command_end_to_end_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "data")
    config = tmp_path / "train.toml"
    config.write_text('architecture = "cinn"\nn_blocks = 2\nhidden_width = 16\nembed_dim = 4\nepochs = 2\nbatch_size = 32\nnoise_std = 0.01\n')
    out = tmp_path / "model.pt"
    args = ["train", "--data", str(data), "--config", str(config), "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert "finished after 2 epochs" in capsys.readouterr().out
    model = load_model(out)
    assert model.param_names == ("c_sed", "depth") and model.param_units == ("m/s", "m")
    draws = model.sample(np.array([18.0, 0.5, 5.5], dtype=np.float32), 100, seed=0)
    assert draws.shape == (100, 2)
    assert bool(((draws[:, 0] > 1500) & (draws[:, 0] < 1800) & (draws[:, 1] > 50) & (draws[:, 1] < 150)).all())
    # the same command with more epochs continues from the training state
    config.write_text(config.read_text().replace("epochs = 2", "epochs = 3"))
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "continuing from" in printed and "finished after 3 epochs" in printed
    assert len(load_model(out).history) == 3


def test_train_command_reports_user_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "data", n_chunks=1, per_chunk=20)
    config = tmp_path / "train.toml"
    config.write_text("epochs = 1\nbatchsize = 8\n")
    args = ["train", "--data", str(data), "--config", str(config), "--out", str(tmp_path / "m.pt")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "unknown key 'batchsize'" in err and "train.toml" in err and len(err.strip().splitlines()) == 1
    config.write_text("epochs = 1\n")
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--config", str(config), "--out", str(tmp_path / "m.pt")]) == 2
    assert "meta.json: not found" in capsys.readouterr().err

"""Posterior corner plots and training curves: the data they draw, and the `plot` commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import posterior_fixtures
from acoustic_inv.cli import main
from acoustic_inv.errors import ConfigError, DataError
from acoustic_inv.plot_posterior_cli import _hpd_levels, corner_plot_data, parse_truth, training_plot_data
from acoustic_inv.plots import plot_corner
from acoustic_inv.posterior import Posterior, read_posterior

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> posterior_fixtures.TinyModel:
    return posterior_fixtures.tiny_model(tmp_path_factory)


@pytest.fixture(scope="module")
def post_file(tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    posterior = Posterior.load(tiny.model)
    x = posterior.observation_model.features_from_pressure(np.array([[1, 0.5 + 0.2j, -0.3j], [1, 0.1, 0.4 + 0.4j]]))
    result = posterior.invert(x, n=3000, seed=0)
    return result.to_netcdf(tmp_path_factory.mktemp("plots") / "post.nc")


def test_corner_plot_data(post_file: Path) -> None:
    posterior = read_posterior(post_file)
    data = corner_plot_data(posterior, {"water_depth_m": 150.0}, level=0.8, bins=30)
    x = posterior.samples.values
    np.testing.assert_allclose(data.interval_low, np.quantile(x, 0.1, axis=0))
    np.testing.assert_allclose(data.interval_high, np.quantile(x, 0.9, axis=0))
    np.testing.assert_allclose(data.median, np.median(x, axis=0))
    assert np.isnan(data.truth[0]) and data.truth[1] == 150.0
    assert data.edges[1][0] < 150.0 < data.edges[1][-1], "the axis reaches the truth, even outside the draws"
    assert data.labels == ("source range (m)", "water depth (m)")
    assert data.short_names == ("source_range", "water_depth")
    for j, density in enumerate(data.marginal_density):
        assert density.shape == (30,)
        assert abs(np.sum(density * np.diff(data.edges[j])) - 1.0) < 0.01  # a density, losing under 1% off-axis
    assert set(data.pair_density) == {(1, 0)} and data.pair_density[(1, 0)].shape == (30, 30)
    assert data.pair_levels[(1, 0)].shape == (2,) and data.pair_levels[(1, 0)][0] < data.pair_levels[(1, 0)][1]
    with pytest.raises(ConfigError, match="--level 1.5"):
        corner_plot_data(posterior, level=1.5)


def test_hpd_levels_enclose_the_masses() -> None:
    rng = np.random.default_rng(0)
    density = rng.gamma(2.0, size=(40, 40))
    density /= density.sum() * 0.25
    levels = _hpd_levels(density, 0.25, (0.9, 0.5))
    for level, mass in zip(levels, (0.9, 0.5)):
        inside = density[density >= level].sum() * 0.25
        assert mass <= inside < mass + 0.01


def test_parse_truth() -> None:
    names = ["a_m", "b_mps"]
    assert parse_truth(["a_m=3", "b_mps = 1500.5"], names) == {"a_m": 3.0, "b_mps": 1500.5}
    with pytest.raises(ConfigError, match=r"unknown parameter 'c'; the posterior has \['a_m', 'b_mps'\]"):
        parse_truth(["c=1"], names)
    with pytest.raises(ConfigError, match="expected NAME=VALUE"):
        parse_truth(["a_m"], names)
    with pytest.raises(ConfigError, match="'x' is not a number"):
        parse_truth(["a_m=x"], names)


def test_plot_posterior_command(post_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fig" / "marginals.png"
    assert main(["plot", "posterior", str(post_file), "--out", str(out), "--truth", "source_range_m=2000",
                 "water_depth_m=100"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 20_000
    assert [p.name for p in out.parent.iterdir()] == ["marginals.png"]
    assert main(["plot", "posterior", str(post_file), "--out", str(out), "--truth", "depth=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("acoustic-inv plot: error: --truth 'depth=3': unknown parameter") and len(err.splitlines()) == 1


def test_one_parameter_corner_plot(post_file: Path, tmp_path: Path) -> None:
    posterior = read_posterior(post_file)
    single = type(posterior)(posterior.samples.isel(param=[0]), posterior.summary, posterior.observed, None,
                             posterior.attrs, posterior.path)
    out = plot_corner(corner_plot_data(single), tmp_path / "one.png")
    assert out.read_bytes()[:8] == PNG


def test_plot_training_command(tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = training_plot_data(tiny.model)
    assert data.epochs.tolist() == list(range(1, 31)) and list(data.train) == ["ml_z"] == list(data.val)
    assert data.best_epoch == int(np.argmin(data.val_score)) + 1
    assert "tiny-pekeris" in data.title and "cinn" in data.title
    out = tmp_path / "loss.png"
    assert main(["plot", "training", str(tiny.model), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 20_000
    capsys.readouterr()
    assert main(["plot", "training", str(tmp_path / "none.pt"), "--out", str(out)]) == 2
    assert "none.pt: no such file" in capsys.readouterr().err


def test_training_plot_needs_a_history(tiny, tmp_path: Path) -> None:
    import torch

    record = torch.load(tiny.model, weights_only=True)
    record["history"] = []
    empty = tmp_path / "empty.pt"
    torch.save(record, empty)
    with pytest.raises(DataError, match=r"empty\.pt: the model file holds no training history"):
        training_plot_data(empty)

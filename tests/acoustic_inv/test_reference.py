"""Tests of acoustic_inv.reference: grid simulation (resume, failures, workers) and grid posteriors.

Most tests use a cheap analytic forward model of the two parameters (water depth and half-space speed),
so the grid posterior can be checked for calibration over many simulated observations: the truth's
highest-posterior-density level must be uniform, and the same check must fail with a wrong SNR prior.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import xarray as xr
from scipy import stats

import scenario_texts
from acoustic_inv.cli import main
from acoustic_inv.errors import ConfigError, DataError
from acoustic_inv.priors import Distribution
from acoustic_inv.reference import (
    GridSpec,
    ReferenceGrid,
    check_grid_scenario,
    grid_spec,
    simulate_grid,
)
from acoustic_inv.scenario import NoiseConfig, ObservationConfig, load_scenario, scenario_from_text
from acoustic_inv.simulation import Simulator
from propagation.errors import EngineError

# The Pekeris test guide with two environment parameters.
TEXT = scenario_texts.PEKERIS.split("[prior.source_range_m]")[0] + """
[prior.water_depth_m]
low = 90.0
high = 110.0

[prior.bottom_sound_speed_mps]
low = 1600.0
high = 1800.0
"""
SCENARIO = scenario_from_text(TEXT)


def analytic_pressure(depth_m, speed_mps, receiver_depths_m, freqs_hz) -> np.ndarray:
    """A smooth made-up field of the two parameters, shape (..., n_freq, n_receiver): a tilted
    wavefront whose tilt follows the depth and whose curvature and amplitude follow the speed."""
    t1 = (np.asarray(depth_m, dtype=float)[..., None, None] - 100.0) / 10.0
    t2 = (np.asarray(speed_mps, dtype=float)[..., None, None] - 1700.0) / 100.0
    z = np.asarray(receiver_depths_m, dtype=float)[None, :] / 100.0
    f = np.asarray(freqs_hz, dtype=float)[:, None] / 50.0
    phase = np.pi * f * (0.8 * t1 * z + 0.3 * t2 * z ** 2 + 0.2 * t1 * t2)
    amplitude = 1.0 + 0.4 * np.cos(2.5 * t2 + 3.0 * z) * np.sin(1.5 * t1 * f + z)
    return amplitude * np.exp(1j * phase)


def analytic_runner(env, source_depth_m, receiver_depths_m, range_m, freqs_hz, engine="kraken", **options):
    return analytic_pressure(env.water_depth_m, env.halfspace.sound_speed_mps, receiver_depths_m, freqs_hz)


def mirrored_runner(env, source_depth_m, receiver_depths_m, range_m, freqs_hz, engine="kraken", **options):
    """The analytic field with the depth mirrored about 100 m: every posterior has two equal modes."""
    depth = 100.0 + abs(env.water_depth_m - 100.0)
    return analytic_pressure(depth, env.halfspace.sound_speed_mps, receiver_depths_m, freqs_hz)


def failing_runner(env, source_depth_m, receiver_depths_m, range_m, freqs_hz, engine="kraken", **options):
    if env.water_depth_m > 106.0:
        raise EngineError(engine, "fake failure in deep water")
    return analytic_runner(env, source_depth_m, receiver_depths_m, range_m, freqs_hz)


_CRASH = {"calls": 0, "after": None}


def crashing_runner(env, source_depth_m, receiver_depths_m, range_m, freqs_hz, engine="kraken", **options):
    _CRASH["calls"] += 1
    if _CRASH["after"] is not None and _CRASH["calls"] > _CRASH["after"]:
        raise KeyboardInterrupt  # a user's Ctrl-C in the middle of a block
    return analytic_runner(env, source_depth_m, receiver_depths_m, range_m, freqs_hz)


def _grid_from_formula(scenario, n_per_axis) -> ReferenceGrid:
    spec = grid_spec(scenario, n_per_axis)
    theta = spec.points()
    pressure = analytic_pressure(theta[:, 0], theta[:, 1], scenario.array.receiver_depths_m, scenario.freqs_hz)
    return ReferenceGrid(scenario, spec, pressure, np.full(spec.n_points, "", dtype=object))


def _with_snr(scenario, low, high):
    return dataclasses.replace(scenario, noise=NoiseConfig("complex_gaussian", Distribution("uniform", low, high)))


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    """A 60 x 60 grid made by simulate_grid and 100 observations simulated from the prior."""
    path = tmp_path_factory.mktemp("grid") / "grid.nc"
    simulate_grid(SCENARIO, path, 60, block_size=1200, progress=False, runner=analytic_runner)
    observations = Simulator(SCENARIO, analytic_runner).simulate(0, range(100))
    return path, observations


def _levels(grid: ReferenceGrid, observations) -> np.ndarray:
    return np.array([grid.posterior(x, refine=False).credible_level(theta)
                     for theta, x in zip(observations.theta, observations.x)])


def test_grid_posterior_is_calibrated(calibration) -> None:
    path, observations = calibration
    grid = ReferenceGrid.open(path)
    assert grid.spec.shape == (60, 60) and grid.n_failed == 0
    levels = _levels(grid, observations)
    inside = int(np.sum(levels < 0.9))
    # 90 % HPD coverage within binomial bounds (two-sided 0.2 %), and HPD levels uniform overall
    assert stats.binom.cdf(inside, 100, 0.9) > 1e-3 and stats.binom.sf(inside - 1, 100, 0.9) > 1e-3
    assert stats.kstest(levels, "uniform").pvalue > 1e-3
    # the posteriors span many cells (the midpoint rule holds), unrefined
    post = grid.posterior(observations.x[0], refine=False)
    assert post.cells_holding(0.99) >= 30 and post.resolved and post.engine_calls == 0


def test_calibration_check_rejects_a_wrong_snr_prior(calibration) -> None:
    path, observations = calibration
    grid = ReferenceGrid.open(path)
    # the same grid and data, but a likelihood that believes the SNR is 7 dB higher: overconfident
    wrong = ReferenceGrid(_with_snr(SCENARIO, 12.0, 27.0), grid.spec, grid.pressure, grid.errors)
    levels = _levels(wrong, observations)
    assert stats.binom.cdf(int(np.sum(levels < 0.9)), 100, 0.9) < 1e-3
    assert stats.kstest(levels, "uniform").pvalue < 1e-3


def test_grid_file_layout(calibration) -> None:
    path, _ = calibration
    with xr.open_dataset(path) as ds:
        assert ds["pressure_real"].dims == ("water_depth_m", "bottom_sound_speed_mps", "freq", "receiver")
        for name in ("water_depth_m", "bottom_sound_speed_mps", "freq", "receiver", "pressure_real",
                     "pressure_imag", "failed", "engine_cpu_s"):
            assert "units" in ds[name].attrs and "long_name" in ds[name].attrs, name
        assert ds["water_depth_m"].attrs["units"] == "m"
        np.testing.assert_allclose(ds["water_depth_m"].values[[0, -1]], [90.0 + 10 / 60, 110.0 - 10 / 60])
        assert ds.attrs["scenario_sha256"] == SCENARIO.sha256
        theta = (ds["water_depth_m"].values[7], ds["bottom_sound_speed_mps"].values[3])
        stored = (ds["pressure_real"] + 1j * ds["pressure_imag"]).values[7, 3]
    np.testing.assert_allclose(stored, analytic_pressure(*theta, SCENARIO.array.receiver_depths_m,
                                                         SCENARIO.freqs_hz), rtol=1e-14)


def test_samples_follow_the_cell_masses() -> None:
    grid = _grid_from_formula(SCENARIO, 40)
    x = Simulator(SCENARIO, analytic_runner).simulate(3, [0]).x[0]
    post = grid.posterior(x, refine=False)
    assert post.mass.sum() == pytest.approx(1.0)
    draws = post.sample(20000, np.random.default_rng(0))
    assert np.all((draws >= SCENARIO.prior.low) & (draws <= SCENARIO.prior.high))
    assert np.all(np.abs(draws.mean(axis=0) - post.mean()) < 4 * post.std() / np.sqrt(20000))
    np.testing.assert_allclose(draws.std(axis=0), post.std(), rtol=0.03)
    # the draws' cells are visited in proportion to their masses
    cells = np.array([post.cell_of(t) for t in draws[:2000]])
    top = np.argmax(post.mass)
    assert np.mean(cells == top) == pytest.approx(post.mass[top], abs=4 * np.sqrt(post.mass[top] / 2000))
    assert post.cells_holding(1.0) <= len(post.mass) and post.effective_cells > 1.0


def test_non_uniform_prior_multiplies_the_likelihood() -> None:
    text = TEXT.replace("[prior.bottom_sound_speed_mps]\nlow = 1600.0",
                        "[prior.bottom_sound_speed_mps]\ndistribution = \"truncated_normal\"\n"
                        "mean = 1650.0\nstd = 30.0\nlow = 1600.0")
    scenario = scenario_from_text(text)
    grid = _grid_from_formula(scenario, 30)
    x = Simulator(scenario, analytic_runner).simulate(1, [0]).x[0]
    post = grid.posterior(x, refine=False)
    expected = grid.log_likelihood(x) + scenario.prior.log_prob(grid.theta)
    np.testing.assert_allclose(post.log_mass - post.log_mass.max(), expected - expected.max(), atol=1e-9)


def test_narrow_posteriors_are_refined_with_engine_runs() -> None:
    sharp = _with_snr(SCENARIO, 25.0, 30.0)
    observation = Simulator(sharp, analytic_runner).simulate(5, [0])
    x, truth = observation.x[0], observation.theta[0]
    coarse = _grid_from_formula(sharp, 8)
    coarse.runner = analytic_runner
    unrefined = coarse.posterior(x, refine=False)
    assert not unrefined.resolved and unrefined.cells_holding(0.99) < 30
    refined = coarse.posterior(x, min_cells=30, refine_budget=300)
    assert refined.resolved and refined.engine_calls > 0 and refined.modes.shape == (1, 2)
    assert refined.cells_holding(0.99) >= 30 and np.all(refined.resolution() >= 1.0)
    assert refined.credible_level(truth) < 0.999
    # the refined cells tile the prior box exactly
    volume = np.exp(refined.log_volume).sum()
    assert volume == pytest.approx(20.0 * 200.0, rel=1e-12)
    # against a fine regular grid that resolves the peak directly
    fine = _grid_from_formula(sharp, 300).posterior(x, refine=False)
    assert fine.cells_holding(0.99) >= 100
    assert np.all(np.abs(refined.mean() - fine.mean()) < 0.02 * fine.std())
    np.testing.assert_allclose(refined.std(), fine.std(), rtol=0.05)


def _box_scenario(low, high, snr_low, snr_high):
    """The test scenario with its prior box shrunk to [low, high]: its posterior is the full posterior
    restricted to the box."""
    text = TEXT.replace("low = 90.0\nhigh = 110.0", f"low = {low[0]!r}\nhigh = {high[0]!r}").replace(
        "low = 1600.0\nhigh = 1800.0", f"low = {low[1]!r}\nhigh = {high[1]!r}")
    return _with_snr(scenario_from_text(text), snr_low, snr_high)


@pytest.mark.parametrize("seed", [0, 1])
def test_very_narrow_posteriors_match_a_fine_local_grid(seed: int) -> None:
    # 38-40 dB: the posterior is far narrower than the 2.5 m x 25 m/s grid cells, so local grids cut
    # through grid cells; their outside parts must not inherit the likelihood of the mode
    sharp = _with_snr(SCENARIO, 38.0, 40.0)
    observation = Simulator(sharp, analytic_runner).simulate(seed, [0])
    x, truth = observation.x[0], observation.theta[0]
    coarse = _grid_from_formula(sharp, 8)
    coarse.runner = analytic_runner
    post = coarse.posterior(x, refine_budget=300)
    assert post.resolved
    low, high = post.mean() - 10 * post.std(), post.mean() + 10 * post.std()
    fine = _grid_from_formula(_box_scenario(low, high, 38.0, 40.0), 200).posterior(x, refine=False)
    assert fine.cells_holding(0.99) > 1000
    assert np.all(np.abs(post.mean() - fine.mean()) < 0.01 * fine.std())
    np.testing.assert_allclose(post.std(), fine.std(), rtol=0.03)
    draws, reference = post.sample(50000, np.random.default_rng(0)), fine.sample(50000, np.random.default_rng(1))
    for axis in range(2):
        np.testing.assert_allclose(np.quantile(draws[:, axis], [0.01, 0.5, 0.99]),
                                   np.quantile(reference[:, axis], [0.01, 0.5, 0.99]), atol=0.05 * fine.std()[axis])
    assert 0.0 < coarse.credible_level(post, x, truth) < 0.999


def test_credible_level_at_the_exact_density(calibration) -> None:
    path, observations = calibration
    grid = ReferenceGrid.open(path, runner=analytic_runner)
    exact, cell = [], []
    for theta, x in zip(observations.theta, observations.x):
        post = grid.posterior(x, refine=False)
        exact.append(grid.credible_level(post, x, theta))
        cell.append(post.credible_level(theta))
    # the exact-density levels are uniform too, and close to the cell-density ones
    assert stats.kstest(exact, "uniform").pvalue > 1e-3
    assert np.median(np.abs(np.array(exact) - np.array(cell))) < 0.03
    assert grid.credible_level(post, x, post.centre[np.argmax(post.mass)]) < 0.05
    assert grid.credible_level(post, x, np.array([80.0, 1700.0])) == 1.0  # outside the prior


def test_refinement_finds_every_mode() -> None:
    sharp = _with_snr(SCENARIO, 25.0, 30.0)
    observation = Simulator(sharp, mirrored_runner).simulate(2, [0])
    x, truth = observation.x[0], observation.theta[0]
    assert abs(truth[0] - 100.0) > 2.0  # two well separated modes
    spec = grid_spec(sharp, 8)
    theta = spec.points()
    pressure = analytic_pressure(100.0 + np.abs(theta[:, 0] - 100.0), theta[:, 1], sharp.array.receiver_depths_m,
                                 sharp.freqs_hz)
    grid = ReferenceGrid(sharp, spec, pressure, np.full(spec.n_points, "", dtype=object), runner=mirrored_runner)
    post = grid.posterior(x)
    assert post.resolved
    upper = post.centre[:, 0] > 100.0
    assert post.mass[upper].sum() == pytest.approx(0.5, abs=0.05)
    # each mode's mean agrees with the mirror image of the other
    mean_upper = np.sum(post.mass[upper, None] * post.centre[upper], axis=0) / post.mass[upper].sum()
    mean_lower = np.sum(post.mass[~upper, None] * post.centre[~upper], axis=0) / post.mass[~upper].sum()
    np.testing.assert_allclose([200.0 - mean_lower[0], mean_lower[1]], mean_upper, rtol=1e-4)
    assert abs(mean_upper[0] - (100.0 + abs(truth[0] - 100.0))) < 0.5


def test_simulate_grid_resumes_after_an_interruption(tmp_path) -> None:
    path = tmp_path / "grid.nc"
    _CRASH.update(calls=0, after=10)
    with pytest.raises(KeyboardInterrupt):
        simulate_grid(SCENARIO, path, (5, 4), block_size=3, progress=False, runner=crashing_runner)
    parts = tmp_path / "grid.nc.parts"
    assert not path.exists() and len(list(parts.glob("block-*.nc"))) == 3  # 9 of 20 points kept
    _CRASH.update(calls=0, after=None)
    report = simulate_grid(SCENARIO, path, (5, 4), block_size=3, progress=False, runner=crashing_runner)
    assert (report.points_resumed, report.points_computed, report.n_points) == (9, 11, 20)
    assert _CRASH["calls"] == 11 and not parts.exists()
    fresh = simulate_grid(SCENARIO, tmp_path / "fresh.nc", (5, 4), progress=False, runner=analytic_runner)
    assert fresh.points_computed == 20
    resumed, whole = ReferenceGrid.open(path), ReferenceGrid.open(tmp_path / "fresh.nc")
    np.testing.assert_array_equal(resumed.pressure, whole.pressure)
    # a complete grid is returned as is; another grid at the same path is refused without --force
    again = simulate_grid(SCENARIO, path, (5, 4), progress=False, runner=crashing_runner)
    assert again.points_computed == 0 and _CRASH["calls"] == 11
    with pytest.raises(DataError, match="another grid"):
        simulate_grid(SCENARIO, path, 6, progress=False, runner=analytic_runner)
    assert simulate_grid(SCENARIO, path, 6, progress=False, force=True, runner=analytic_runner).n_points == 36


def test_engine_failures_are_recorded_and_get_no_mass(tmp_path) -> None:
    path = tmp_path / "grid.nc"
    report = simulate_grid(SCENARIO, path, 10, progress=False, runner=failing_runner)
    assert report.n_failed == 20  # depths 107 and 109 m
    grid = ReferenceGrid.open(path)
    assert grid.n_failed == 20
    with xr.open_dataset(path) as ds:
        assert int(ds["failed"].sum()) == 20
        assert "fake failure" in str(ds["error"].values[-1, 0])
        assert np.all(np.isnan(ds["pressure_real"].values[-2:]))
    x = Simulator(SCENARIO, analytic_runner).simulate(0, [0]).x[0]
    post = grid.posterior(x, refine=False)
    assert post.n_failed_cells == 20 and np.all(post.mass[grid.theta[:, 0] > 106.0] == 0.0)
    assert np.isclose(post.mass.sum(), 1.0)


def test_workers_give_the_same_grid(tmp_path) -> None:
    one = simulate_grid(SCENARIO, tmp_path / "one.nc", (4, 3), progress=False, runner=analytic_runner)
    two = simulate_grid(SCENARIO, tmp_path / "two.nc", (4, 3), workers=2, block_size=2, progress=False,
                        runner=analytic_runner)
    assert one.points_computed == two.points_computed == 12
    np.testing.assert_array_equal(ReferenceGrid.open(tmp_path / "one.nc").pressure,
                                  ReferenceGrid.open(tmp_path / "two.nc").pressure)


def test_grid_spec_and_scenario_checks() -> None:
    spec = grid_spec(SCENARIO, spacing=(3.0, 50.0))
    assert isinstance(spec, GridSpec) and spec.shape == (7, 4)
    np.testing.assert_allclose(spec.cell_width, [20.0 / 7, 50.0])
    assert grid_spec(SCENARIO, (3, 5)).points().shape == (15, 2)
    np.testing.assert_array_equal(grid_spec(SCENARIO, (3, 5)).points()[:2, 0], [90.0 + 10 / 3] * 2)
    for kwargs, match in (({}, "exactly one"), ({"n_per_axis": 1}, "n_per_axis"),
                          ({"n_per_axis": (3, 4, 5)}, "n_per_axis"), ({"spacing": -1.0}, "spacing")):
        with pytest.raises(ConfigError, match=match):
            grid_spec(SCENARIO, **kwargs)
    with pytest.raises(ConfigError, match="exactly 2"):
        check_grid_scenario(scenario_from_text(scenario_texts.PEKERIS))
    geometry = TEXT.replace("[prior.bottom_sound_speed_mps]\nlow = 1600.0\nhigh = 1800.0",
                            "[prior.source_range_m]\nlow = 1000.0\nhigh = 2000.0")
    with pytest.raises(ConfigError, match="source_range_m"):
        check_grid_scenario(scenario_from_text(geometry))
    csdm = dataclasses.replace(SCENARIO, observation=ObservationConfig("csdm", 1))
    with pytest.raises(ConfigError, match="csdm"):
        check_grid_scenario(csdm)
    with pytest.raises(DataError, match="no such reference grid"):
        ReferenceGrid.open("/nonexistent/grid.nc")
    check_grid_scenario(load_scenario("vina-gi"))


def test_cli_runs_the_real_engine(tmp_path, capsys) -> None:
    scenario_path = scenario_texts.write(tmp_path, TEXT, "two-params.toml")
    out = tmp_path / "grid.nc"
    argv = ["reference", "grid", "--scenario", str(scenario_path), "--out", str(out), "--n-per-axis", "2",
            "--no-progress"]
    assert main(argv) == 0
    assert "4 grid points of pekeris-test (0 failed); computed 4 point(s)" in capsys.readouterr().out
    grid = ReferenceGrid.open(out)
    assert grid.n_failed == 0 and np.all(np.isfinite(grid.pressure))
    with xr.open_dataset(out) as ds:
        assert json.loads(ds.attrs["engine_options"]) == {} and np.all(ds["engine_cpu_s"].values > 0)
    assert main(argv) == 0 and "already complete" in capsys.readouterr().out
    assert main([a if a != "2" else "3" for a in argv]) == 2
    assert "another grid" in capsys.readouterr().err


@pytest.mark.slow
def test_vina_gi_reference_posterior_with_the_real_engine(tmp_path) -> None:
    """End to end on vina-gi: a coarse grid, then mode search and a local grid with real engine runs
    (about 900 runs, 1-2 minutes of CPU). The truth must lie inside the refined posterior."""
    scenario = load_scenario("vina-gi")
    report = simulate_grid(scenario, tmp_path / "grid.nc", 6, progress=False)
    assert report.n_failed == 0 and report.engine_cpu_s > 0
    grid = ReferenceGrid.open(tmp_path / "grid.nc")
    observation = Simulator(scenario).simulate(7, [0])
    theta, x = observation.theta[0], observation.x[0]
    coarse = grid.posterior(x, refine=False)
    assert not coarse.resolved  # 6 m x 10 m/s cells are far too coarse for these posteriors
    post = grid.posterior(x)
    assert post.resolved and len(post.modes) >= 1 and 0 < post.engine_calls < 3000
    assert grid.credible_level(post, x, theta) < 0.99
    assert np.all(np.abs(post.mean() - theta) < 5.0 * post.std())

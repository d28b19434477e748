"""Fast checks of the pieces of ``benchmarks/compare.py`` that the full comparison relies on.

The comparison itself needs a real dataset, a reference grid and minutes to hours of CPU; these tests
cover its own numerics (ESS, adaptive Metropolis, the paper's MSE, the calibration noise floor), the
regeneration of the simulator's noise that the INN's ``theta_pad`` mode is given, the goals and the
Markdown table, in a few seconds.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_compare():
    name = "benchmarks_compare_under_test"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


compare = _load_compare()


def test_ess_of_independent_draws_is_about_n_and_of_ar1_about_its_theory() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    iid = rng.standard_normal((n, 2))
    ess = compare.effective_sample_size(iid)
    assert np.all(np.abs(ess / n - 1.0) < 0.15), ess
    phi = 0.9
    ar = np.empty(n)
    ar[0] = rng.standard_normal()
    for t in range(1, n):
        ar[t] = phi * ar[t - 1] + np.sqrt(1 - phi**2) * rng.standard_normal()
    expected = n * (1 - phi) / (1 + phi)  # tau = (1 + phi) / (1 - phi) for AR(1)
    got = compare.effective_sample_size(ar[:, None])[0]
    assert 0.7 * expected < got < 1.3 * expected, (got, expected)
    assert np.isnan(compare.effective_sample_size(np.ones((100, 1)))[0])


def test_adaptive_metropolis_samples_a_correlated_gaussian() -> None:
    mean = np.array([1.0, -2.0])
    cov = np.array([[1.0, 0.9 * 0.5], [0.9 * 0.5, 0.25]])
    precision = np.linalg.inv(cov)

    def log_density(theta: np.ndarray) -> float:
        r = theta - mean
        return -0.5 * float(r @ precision @ r)

    low, high = np.array([-10.0, -10.0]), np.array([10.0, 10.0])
    chain = compare.adaptive_metropolis(log_density, np.array([4.0, 0.0]), 12000, np.random.default_rng(1), low, high,
                                        initial_scale_fraction=0.01, adapt_start=100)
    kept = chain.theta[2000:]
    assert np.allclose(kept.mean(axis=0), mean, atol=0.15)
    assert np.allclose(np.cov(kept.T), cov, atol=0.15)
    assert 0.15 < chain.accepted[2000:].mean() < 0.6
    ess = compare.effective_sample_size(kept)
    assert np.all(ess > 300)


def test_adaptive_metropolis_never_evaluates_outside_the_box() -> None:
    calls = []

    def flat(theta: np.ndarray) -> float:
        calls.append(theta.copy())
        return 0.0

    low, high = np.array([0.0, 5.0]), np.array([1.0, 6.0])
    chain = compare.adaptive_metropolis(flat, np.array([0.5, 5.5]), 3000, np.random.default_rng(2), low, high,
                                        initial_scale_fraction=0.3, adapt_start=100)
    evaluated = np.array(calls)
    assert np.all(evaluated >= low) and np.all(evaluated <= high)
    assert chain.evaluations == len(calls) < 3001  # some proposals fell outside and cost nothing
    assert np.all(chain.theta >= low) and np.all(chain.theta <= high)
    # A flat target on the box: the chain spreads over it.
    assert np.allclose(chain.theta[500:].mean(axis=0), [0.5, 5.5], atol=0.1)


def test_paper_mse_is_the_mean_over_draws_of_the_squared_error() -> None:
    draws = np.array([[[1.0, 10.0], [3.0, 14.0]]])  # one observation, two draws
    truths = np.array([[2.0, 10.0]])
    assert np.allclose(compare.paper_mse(draws, truths), [[1.0, 8.0]])


def test_calibration_noise_floor_shrinks_with_more_simulations() -> None:
    small = compare.calibration_noise_floor(100, seed=0, n_repeats=500)
    large = compare.calibration_noise_floor(1000, seed=0, n_repeats=500)
    assert large["median"] < small["median"]
    # Binomial sd at level 0.5 with 1000 simulations is 0.016; the maximum over 19 levels sits above it.
    assert 0.015 < large["median"] < 0.04


def _fake_runner(env, source_depth_m, receiver_depths_m, range_m, freqs_hz, engine="kraken", **options):
    """A smooth deterministic stand-in for the engine: complex pressure (n_freq, n_receiver)."""
    z = np.asarray(receiver_depths_m, dtype=float)
    f = np.asarray(freqs_hz, dtype=float)[:, None]
    c = env.layers[0].sound_speed_top_mps if env.layers else env.halfspace.sound_speed_mps
    phase = 2 * np.pi * f * (z[None, :] + env.water_depth_m) / c
    return (1.0 + 0.1 * np.sin(z[None, :] / 7.0 + f / 50.0)) * np.exp(1j * phase)


def test_simulator_noise_rebuilds_the_stored_features(tmp_path: Path) -> None:
    from acoustic_inv.datasets import generate
    from acoustic_inv.errors import DataError

    generate("vina-gi", tmp_path / "data", 12, seed=3, chunk_size=6, progress=False, runner=_fake_runner)
    sims = compare.load_simulations(tmp_path / "data", 10)
    assert len(sims) == 10 and list(sims.sample) == list(range(10))
    noise = compare.simulator_noise(sims)
    assert noise.shape == (10, 1 + 2 * 7 * 5)
    assert compare.check_simulator_noise(sims, noise) < 1e-5
    # The noise of another sample does not rebuild the features: the check can fail.
    with pytest.raises(DataError, match="rebuilt"):
        compare.check_simulator_noise(sims, np.roll(noise, 1, axis=0))


def _amortized(c2st: list[float], w2: list[float], cal: list[float], seconds: float) -> dict:
    return {
        "kind": "network", "family": "INN",
        "per_observation": [{"observation": i, "c2st": v, "wasserstein2_normalized": w} for i, (v, w) in
                            enumerate(zip(c2st, w2))],
        "c2st": compare._summary(c2st),
        "wasserstein2_normalized": compare._summary(w2),
        "sample_seconds": compare._summary([seconds]),
        "train_seconds": 12.0,
        "paper_mse_reference_obs": [0.1, 2.0],
        "calibration": {"calibration_error": cal, "rmse": [0.3, 2.0], "paper_mse": [0.1, 4.0], "n_draws": 1000,
                        "seconds_per_posterior_batched": seconds / 10},
    }


def test_goals_and_table() -> None:
    results = {
        "cinn_ml": _amortized([0.52, 0.53, 0.54], [0.010, 0.012, 0.011], [0.02, 0.025], 0.01),
        "inn_ml": _amortized([0.70, 0.80, 0.75], [0.05, 0.06, 0.04], [0.05, 0.2], 0.01),
        # C2ST ties with NPE (both saturated), W2 clearly worse: not as accurate.
        "inn_mmd": _amortized([0.53, 0.52, 0.55], [0.02, 0.03, 0.025], [0.05, 0.2], 0.01),
        "npe": {**_amortized([0.53, 0.52, 0.55], [0.011, 0.011, 0.012], [0.02, 0.02], 0.05), "kind": "npe"},
        "mcmc": {"kind": "mcmc", "per_observation": [{"observation": 0, "seconds": 300.0, "engine_calls": 2001,
                                                      "acceptance_rate": 0.3, "ess": [150.0, 120.0],
                                                      "seconds_per_ess": 2.5, "c2st": 0.6, "paper_mse": [0.1, 3.0]}],
                 "c2st": compare._summary([0.6]), "wasserstein2_normalized": compare._summary([0.02]),
                 "seconds": compare._summary([300.0]), "burn_in": 500,
                 "settings": {"n_steps": 2000, "init": "bartlett"}},
        "broken": {"kind": "network", "failed": "training diverged"},
    }
    raw = compare.goals(results)  # without n_posterior: the chain as run decides
    assert raw["cinn_ml"]["speed"]["status"] == "MET"  # 300 s / 10 ms = 3e4
    assert raw["cinn_ml"]["speed"]["value_equal_ess"] is None
    goals = compare.goals(results, n_posterior=10_000)
    assert goals["cinn_ml"]["calibration"]["status"] == "MET"
    assert goals["cinn_ml"]["c2st"]["status"] == "MET"
    assert goals["cinn_ml"]["npe"]["status"] == "MET"
    speed = goals["cinn_ml"]["speed"]
    assert speed["status"] == "MET"
    assert speed["value_equal_ess"] == pytest.approx(2.5 * 10_000 / 0.01)  # s per ESS x draws / network time
    assert speed["value_chain_as_run"] == pytest.approx(3e4)
    # A short chain: 20 s as run misses 10^4 against 10 ms, but 10,000 effective draws cost it 25,000 s.
    short = {**results, "mcmc": {**results["mcmc"], "seconds": compare._summary([20.0])}}
    assert compare.goals(short)["cinn_ml"]["speed"]["status"] == "MISSED"
    assert compare.goals(short, n_posterior=10_000)["cinn_ml"]["speed"]["status"] == "MET"
    slow = {**results, "mcmc": {**results["mcmc"], "per_observation": [
        {**results["mcmc"]["per_observation"][0], "seconds_per_ess": 0.005}]}}
    assert compare.goals(slow, n_posterior=10_000)["cinn_ml"]["speed"]["status"] == "MISSED"  # 5e3x
    assert goals["inn_ml"]["calibration"]["status"] == "MISSED"
    assert goals["inn_ml"]["c2st"]["status"] == "MISSED"
    assert goals["inn_ml"]["npe"]["status"] == "MISSED"
    assert goals["inn_mmd"]["npe"]["status"] == "MISSED" and goals["inn_mmd"]["npe"]["worse_in"] == ["W2"]
    assert goals["broken"]["c2st"]["status"] == "n/a"
    assert "npe" not in goals and "mcmc" not in goals
    document = {
        "settings": {"quick": False, "data": "D", "test": "T", "grid": "G", "refine": True, "n_posterior": 10000,
                     "n_wasserstein": 2000, "n_calibration_draws": 1000, "seed": 0},
        "data": {"train": {"n": 20000}, "n_obs": 3, "n_calibration": 1000},
        "grid": {"shape": [100, 100], "engine_cpu_seconds": 800.0},
        "reference": {"fraction_resolved": 1.0, "seconds": {"mean": 30.0}, "paper_mse_reference_obs": [0.01, 1.0],
                      "calibration_noise_floor": {"median": 0.022, "p95": 0.035}},
        "machine": {"torch_threads": 1, "cpus": 2, "load_average": [2.0, 2.0, 2.0]},
        "created": "now", "methods": results, "goals": goals,
    }
    table = compare.markdown(document)
    assert "| `cinn_ml` | 0.530 ± 0.008 |" in table
    assert "MET (0.020 / 0.025)" in table and "MISSED (0.050 / 0.200)" in table
    assert "`broken`: training diverged" in table


def test_every_registered_method_has_a_readable_configuration() -> None:
    for method in compare.METHODS.values():
        values = compare.method_settings(method, quick=True)
        if method.kind == "network":
            from acoustic_inv.train_config import TrainConfig

            members = values.pop("ensemble_members", 1)
            assert isinstance(members, int) and members >= 1
            config = TrainConfig.from_dict({**values, "seed": 0}, source=method.name)
            assert config.epochs == 2
        elif method.kind == "npe":
            assert values["density_estimator"] == "zuko_nsf" and values["max_num_epochs"] == 2
    assert set(compare.DEFAULT_METHODS) <= set(compare.METHODS)
    assert set(compare.QUICK_METHODS) <= set(compare.METHODS)


def test_an_ensemble_method_trains_its_members_from_consecutive_seeds(tmp_path: Path) -> None:
    from acoustic_inv.sources import ParamInfo

    _methods = compare._methods
    rng = np.random.default_rng(0)
    theta = rng.uniform(0.0, 1.0, size=(300, 2))
    x = np.column_stack([theta.sum(1), theta[:, 0] - theta[:, 1], theta[:, 0] ** 2]) + 0.05 * rng.normal(size=(300, 3))
    params = [ParamInfo("a", "1", 0.0, 1.0), ParamInfo("b", "1", 0.0, 1.0)]
    values = {"architecture": "cinn", "n_blocks": 2, "hidden_width": 16, "embed_dim": 4, "epochs": 2, "seed": 7}
    fitted = _methods.fit_network(theta, x, params, values, source="test", out=tmp_path / "model.pt", members=3)
    assert [m["seed"] for m in fitted.details["members"]] == [7, 8, 9]
    assert sorted(p.name for p in tmp_path.glob("model-*.pt")) == ["model-0.pt", "model-1.pt", "model-2.pt"]
    assert fitted.sample(x[0], 31, 0).shape == (31, 2)
    assert fitted.sample_batch(x[:4], 10, 0).shape == (4, 10, 2)
    single = _methods.fit_network(theta, x, params, values, source="test")
    assert "members" not in single.details

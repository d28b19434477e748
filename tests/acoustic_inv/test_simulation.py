"""Tests of acoustic_inv.simulation: per-sample streams, the real engine path, failures, reuse."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import propagation
import scenario_texts
from acoustic_inv.errors import ConfigError
from acoustic_inv.observation import ObservationModel, add_noise
from acoustic_inv.scenario import EngineConfig, replace_simulation, scenario_from_text
from acoustic_inv.simulation import Simulator, sample_rng
from fake_engine import fake_pressure
from propagation.errors import EngineNotFoundError

SCENARIO = scenario_from_text(scenario_texts.PEKERIS)


def _with_options(scenario, **options):
    return dataclasses.replace(scenario, engine=EngineConfig("kraken", tuple(sorted(options.items()))))


def test_a_sample_depends_only_on_seed_and_index() -> None:
    sim = Simulator(SCENARIO, fake_pressure)
    batch = sim.simulate(7, range(10))
    single = sim.simulate(7, [6])
    np.testing.assert_array_equal(single.theta[0], batch.theta[6])
    np.testing.assert_array_equal(single.x[0], batch.x[6])
    np.testing.assert_array_equal(single.snr_db[0], batch.snr_db[6])
    reverse = sim.simulate(7, range(9, -1, -1))
    np.testing.assert_array_equal(reverse.x[::-1], batch.x)
    other_seed = sim.simulate(8, range(10))
    assert not np.any(np.isclose(other_seed.theta[:, 0], batch.theta[:, 0]))
    assert len(np.unique(batch.theta[:, 0])) == 10


def test_draws_follow_the_prior_and_the_stream_order() -> None:
    sim = Simulator(SCENARIO, fake_pressure)
    result = sim.simulate(3, range(200))
    prior = SCENARIO.prior
    assert np.all(result.theta >= prior.low) and np.all(result.theta <= prior.high)
    assert np.all((result.snr_db >= 5.0) & (result.snr_db <= 20.0))
    # theta from the first d uniforms of the sample's stream, then the SNR from the next one
    rng = sample_rng(3, 17)
    np.testing.assert_array_equal(result.theta[17], prior.ppf(rng.random(len(prior))))
    assert result.snr_db[17] == pytest.approx(SCENARIO.noise.snr_db.ppf(rng.random()))


def test_real_engine_pressure_and_features() -> None:
    sim = Simulator(SCENARIO)  # the real engine, as users get it
    result = sim.simulate(0, [0, 1])
    assert result.n_failed == 0
    theta = result.theta[1]
    geometry = SCENARIO.geometry(theta)
    direct = propagation.pressure(geometry.environment, geometry.source_depth_m,
                                  SCENARIO.array.receiver_depths_m, geometry.source_range_m,
                                  SCENARIO.freqs_hz, engine="kraken").values
    np.testing.assert_array_equal(result.pressure[1], direct)
    # Features = observation model of the pressure plus noise drawn from the sample's stream.
    rng = sample_rng(0, 1)
    rng.random(len(SCENARIO.prior) + 1)
    noisy = add_noise(direct, result.snr_db[1], rng)
    expected = ObservationModel.from_scenario(SCENARIO).features_from_pressure(noisy)
    np.testing.assert_allclose(result.x[1], expected.astype(np.float32))
    assert result.engine_seconds > 0


def test_engine_failures_are_recorded_not_raised() -> None:
    scenario = _with_options(SCENARIO, fail_range_above_m=3000.0)
    result = Simulator(scenario, fake_pressure).simulate(1, range(30))
    failed = ~result.ok
    assert 0 < failed.sum() < 30
    np.testing.assert_array_equal(failed, result.theta[:, 0] > 3000.0)
    assert all(e.startswith("EngineError: kraken: fake failure at range") for e, f in zip(result.errors, failed) if f)
    assert np.all(np.isnan(result.x[failed])) and np.all(np.isfinite(result.x[~failed]))
    assert result.n_failed == failed.sum()


def _missing_engine(*args, **kwargs):
    raise EngineNotFoundError("engine 'kraken' is not available: no pelagic")


def test_a_missing_engine_stops_the_run() -> None:
    with pytest.raises(ConfigError, match="not available"):
        Simulator(SCENARIO, _missing_engine).simulate(0, [0])


def test_environment_reuse_shares_the_environment_only() -> None:
    scenario = replace_simulation(SCENARIO, environment_reuse=4)
    result = Simulator(scenario, fake_pressure).simulate(0, range(8))
    names = scenario.prior.names
    env = [names.index("water_depth_m"), names.index("bottom_sound_speed_mps")]
    src = names.index("source_range_m")
    for group in (slice(0, 4), slice(4, 8)):
        assert len(np.unique(result.theta[group][:, env], axis=0)) == 1
        assert len(np.unique(result.theta[group][:, src])) == 4
    assert not np.allclose(result.theta[0, env], result.theta[4, env])
    # Source parameters are drawn exactly as without reuse.
    plain = Simulator(SCENARIO, fake_pressure).simulate(0, range(8))
    np.testing.assert_array_equal(result.theta[:, src], plain.theta[:, src])


def test_environment_reuse_runs_one_engine_call_per_group_and_ignores_chunking() -> None:
    scenario = replace_simulation(SCENARIO, environment_reuse=4)
    simulator = Simulator(scenario)
    whole = simulator.simulate(3, range(8))
    assert whole.errors == [""] * 8
    # Any part of a group gives the same values as the whole: groups are always computed whole.
    part = simulator.simulate(3, [5, 2])
    np.testing.assert_array_equal(part.x, whole.x[[5, 2]])
    np.testing.assert_array_equal(part.pressure, whole.pressure[[5, 2]])
    # The batched call agrees with one engine call per position.
    for k in (0, 6):
        single = simulator.run_engine(whole.theta[k])
        np.testing.assert_allclose(np.abs(whole.pressure[k]), np.abs(single), rtol=2e-3)
        assert np.max(np.abs(np.angle(whole.pressure[k] / single))) < 2e-3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vina-gi", "pekeris-bellhop", "swellex96"])
def test_shipped_scenarios_run_on_the_real_engine(name: str) -> None:
    from acoustic_inv.scenario import load_scenario

    scenario = load_scenario(name)
    result = Simulator(scenario).simulate(0, [0, 1])
    assert result.errors == ["", ""]
    assert result.x.shape == (2, ObservationModel.from_scenario(scenario).n_features)
    assert np.all(np.isfinite(result.x))
    level_db = 20 * np.log10(np.abs(result.pressure))
    assert np.all((level_db > -140) & (level_db < -20))  # a field 20-140 dB below 1 m from the source

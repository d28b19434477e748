"""Evaluation statistics on posteriors whose calibration is known exactly."""

import json

import numpy as np
import pytest

from acoustic_inv.evaluate import evaluate_samples


def conjugate_case(n_obs=400, n_draws=500, widen=1.0, seed=0):
    """theta ~ N(0, 1), x = theta + N(0, 0.5^2): posterior N(0.8 x, 0.2) per parameter (d = 2)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(n_obs, 2))
    x = theta + 0.5 * rng.normal(size=(n_obs, 2))
    mean, std = 0.8 * x, np.sqrt(0.2) * widen
    samples = mean[:, None, :] + std * rng.normal(size=(n_obs, n_draws, 2))
    return samples, theta


def test_exact_posterior_is_calibrated_and_contracts_as_predicted():
    samples, theta = conjugate_case()
    ev = evaluate_samples(samples, theta, ["a", "b"], ["m", "m/s"])
    assert np.all(ev.calibration_error < 0.07)
    assert np.all(ev.sbc_p_value > 0.001)
    assert abs(ev.tarp_atc) < 0.05
    # contraction 1 - 0.2 / 1 = 0.8; z-scores standard normal; RMSE sqrt(0.2)
    np.testing.assert_allclose(ev.contraction, 0.8, atol=0.05)
    np.testing.assert_allclose(ev.z_mean, 0.0, atol=0.15)
    np.testing.assert_allclose(ev.z_std, 1.0, atol=0.1)
    np.testing.assert_allclose(ev.rmse, np.sqrt(0.2), rtol=0.1)
    doc = json.loads(json.dumps(ev.to_json()))
    assert doc["parameters"]["b"]["units"] == "m/s" and len(doc["levels"]) == 19
    assert "cal. error" in ev.table()


def test_overconfident_posterior_is_flagged():
    samples, theta = conjugate_case(widen=0.5)
    ev = evaluate_samples(samples, theta, ["a", "b"], ["m", "m"])
    assert np.all(ev.calibration_error > 0.2)
    assert np.all(ev.sbc_p_value < 1e-6)
    assert np.all(ev.z_std > 1.5)


def test_shapes_are_checked():
    samples, theta = conjugate_case(n_obs=10, n_draws=20)
    with pytest.raises(ValueError, match="do not match"):
        evaluate_samples(samples, theta[:5], ["a", "b"], ["m", "m"])


def test_evaluate_command_writes_json_and_plot(tmp_path_factory, capsys):
    import posterior_fixtures

    from acoustic_inv.cli import main

    tiny = posterior_fixtures.tiny_model(tmp_path_factory)
    out = tmp_path_factory.mktemp("evaluation")
    code = main(["evaluate", "--model", str(tiny.model), "--data", str(tiny.dataset), "--n-obs", "150",
                 "--draws", "200", "--out", str(out)])
    assert code == 0
    doc = json.loads((out / "evaluation.json").read_text())
    assert doc["n_obs"] == 150 and doc["n_draws"] == 200
    assert set(doc["parameters"]) == {"source_range_m", "water_depth_m"}
    for entry in doc["parameters"].values():
        assert 0.0 <= entry["calibration_error"] <= 1.0 and entry["rmse"] > 0
    assert (out / "calibration.png").stat().st_size > 10_000
    assert "cal. error" in capsys.readouterr().out


def test_evaluate_refuses_a_dataset_of_another_model(tmp_path_factory):
    import posterior_fixtures

    from acoustic_inv.cli import main
    from acoustic_inv.datasets import generate
    from fake_engine import fake_pressure
    import scenario_texts

    tiny = posterior_fixtures.tiny_model(tmp_path_factory)
    other = tmp_path_factory.mktemp("other")
    scenario = scenario_texts.write(other)
    generate(scenario, other / "data", 8, seed=0, progress=False, runner=fake_pressure)
    code = main(["evaluate", "--model", str(tiny.model), "--data", str(other / "data"), "--out", str(other)])
    assert code == 2

"""Posteriors: model metadata and integrity, observations in, draws and summaries out, warnings, files.

The tiny model (``posterior_fixtures.py``) is trained once per session on a fake-engine dataset of a
3-receiver, 2-tone guide; recordings are synthesized with the same fake engine at known truths.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import torch
import xarray as xr

import posterior_fixtures
from acoustic_inv import posterior as posterior_module
from acoustic_inv.checkpoint import content_hash, load_checkpoint, save_model
from acoustic_inv.errors import DataError
from acoustic_inv.model_metadata import ModelMetadata, fit_typicality
from acoustic_inv.posterior import Posterior, bartlett_power, read_posterior
from acoustic_inv.scenario import load_scenario
from acoustic_inv.sources import InMemorySource, ParamInfo
from acoustic_inv.synth import synthesize
from acoustic_inv.tonals import TonalConfig, extract_tonals
from acoustic_inv.train_config import TrainConfig
from acoustic_inv.training import fit
from fake_engine import fake_pressure

TRUTH = {"source_range_m": 1800.0, "water_depth_m": 95.0}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> posterior_fixtures.TinyModel:
    return posterior_fixtures.tiny_model(tmp_path_factory)


@pytest.fixture(scope="module")
def posterior(tiny: posterior_fixtures.TinyModel) -> Posterior:
    return Posterior.load(tiny.model)


@pytest.fixture(scope="module")
def scenario(tiny: posterior_fixtures.TinyModel):
    return load_scenario(tiny.scenario_path)


@pytest.fixture(scope="module")
def estimate(scenario):
    synthetic = synthesize(scenario, TRUTH, duration_s=40.0, sample_rate_hz=400.0, snr_db=15.0, seed=2,
                           runner=fake_pressure)
    return extract_tonals(synthetic.recording, scenario.freqs_hz)


# -- model files -------------------------------------------------------------------------------------


def test_model_file_carries_the_inversion_metadata(tiny: posterior_fixtures.TinyModel) -> None:
    record = torch.load(tiny.model, weights_only=True)  # plain values and tensors only
    meta = record["inversion"]
    text = tiny.scenario_path.read_text()
    assert meta["scenario"]["text"] == text and meta["scenario"]["name"] == "tiny-pekeris"
    assert meta["scenario"]["sha256"] == load_scenario(tiny.scenario_path).sha256
    assert meta["observation"] == {"features": "unit_pressure", "reference_receiver": 0,
                                   "freqs_hz": [50.0, 80.0], "receiver_depths_m": [25.0, 50.0, 75.0]}
    assert meta["snr_db_range"] == [10.0, 25.0]
    assert meta["params"]["names"] == ["source_range_m", "water_depth_m"] and meta["params"]["units"] == ["m", "m"]
    typicality = meta["typicality"]
    assert typicality["levels"] == [0.5, 0.9, 0.99, 0.999]
    assert typicality["n_train"] + typicality["n_val"] == posterior_fixtures.N_SAMPLES
    assert typicality["n_val"] == 200  # val_fraction 0.2 of each chunk
    assert np.all(np.diff(typicality["quantiles"]) > 0) and 0.3 < typicality["quantiles"][0] < 1.5
    assert isinstance(typicality["whitening"], torch.Tensor) and typicality["whitening"].shape == (10, 10)
    assert record["content_sha256"] == content_hash(record)


def test_typicality_is_a_calibrated_mahalanobis_statistic() -> None:
    rng = np.random.default_rng(0)
    mixing = np.array([[1.0, 0.0, 0.0], [0.9, 0.3, 0.0], [0.0, 0.0, 5.0]])
    draw = lambda n: rng.normal(size=(n, 3)) @ mixing.T + np.array([1.0, -2.0, 10.0])  # noqa: E731
    typicality = fit_typicality([draw(5000), draw(5000)], [draw(20000)], ridge=1e-6)
    held_out = typicality.statistic(draw(20000))
    assert np.mean(held_out > typicality.threshold(0.999)) < 0.003
    assert abs(np.mean(held_out) - 1.0) < 0.03  # chi-square with 3 degrees of freedom, divided by 3
    # a point that is typical feature by feature but breaks the correlation of the first two
    odd = np.array([1.0 + 1.5, -2.0 - 1.5, 10.0])
    assert np.all(np.abs(odd - [1.0, -2.0, 10.0]) / np.sqrt(np.diag(mixing @ mixing.T)) < 1.6)
    assert typicality.statistic(odd) > 5 * typicality.threshold(0.999)
    with pytest.raises(DataError, match="validation split is empty"):
        fit_typicality([draw(10)], [])


def test_tampered_weights_are_detected(tiny: posterior_fixtures.TinyModel, tmp_path: Path) -> None:
    record = torch.load(tiny.model, weights_only=True)
    key = next(k for k in record["state_dict"] if k.endswith("weight"))
    record["state_dict"][key] = record["state_dict"][key] + 1e-4
    tampered = tmp_path / "tampered.pt"
    torch.save(record, tampered)
    with pytest.raises(DataError, match=r"tampered\.pt: content check failed"):
        Posterior.load(tampered)
    # changed scenario text: also caught by the hash
    record = torch.load(tiny.model, weights_only=True)
    record["inversion"]["scenario"]["text"] += "\n# edited\n"
    edited = tmp_path / "edited.pt"
    torch.save(record, edited)
    with pytest.raises(DataError, match=r"edited\.pt: content check failed"):
        Posterior.load(edited)


def test_flipped_bytes_in_the_weights_are_refused(tiny: posterior_fixtures.TinyModel, tmp_path: Path) -> None:
    data = bytearray(tiny.model.read_bytes())
    record = torch.load(tiny.model, weights_only=True)
    key = [k for k in record["state_dict"] if k.endswith("weight")][-1]
    weights = record["state_dict"][key].numpy().tobytes()
    at = bytes(data).find(weights[:64])
    assert at > 0, "the tensor bytes are stored uncompressed"
    data[at + 8] ^= 0x55
    broken = tmp_path / "flipped.pt"
    broken.write_bytes(bytes(data))
    torch.load(broken, weights_only=True)  # torch itself does not notice
    with pytest.raises(DataError, match=r"flipped\.pt: content check failed"):
        Posterior.load(broken)


def test_models_without_metadata_and_missing_default_are_explained(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    theta = rng.uniform(0.0, 1.0, size=(64, 1))
    source = InMemorySource(theta, np.hstack([theta, theta**2]) + 0.01 * rng.normal(size=(64, 2)),
                            [ParamInfo("a", "m", 0.0, 1.0)])
    config = TrainConfig(n_blocks=1, hidden_width=8, embed_dim=2, epochs=1, batch_size=32)
    bare = tmp_path / "bare.pt"
    save_model(bare, fit(source, config).model, config)
    with pytest.raises(DataError, match=r"bare\.pt: the model has no inversion metadata.*acoustic-inv train --data"):
        Posterior.load(bare)
    missing = tmp_path / "models" / "swellex96.pt"
    monkeypatch.setattr(posterior_module, "DEFAULT_MODEL_PATH", missing)
    with pytest.raises(DataError, match=r"swellex96\.pt: the default SWellEx-96 model is not installed\. Train it"):
        Posterior.load()


def test_metadata_record_round_trip(posterior: Posterior) -> None:
    again = ModelMetadata.from_record(posterior.metadata.to_record())
    assert again.freqs_hz == posterior.freqs_hz and again.snr_db_range == (10.0, 25.0)
    assert np.array_equal(again.typicality.whitening, posterior.metadata.typicality.whitening)
    assert again.scenario().name == "tiny-pekeris"
    bad = posterior.metadata.to_record()
    bad["scenario"]["text"] += " "
    with pytest.raises(DataError, match="SHA-256"):
        ModelMetadata.from_record(bad, "m.pt")
    del bad["observation"]
    with pytest.raises(DataError, match=r"m\.pt: malformed inversion metadata \(KeyError"):
        ModelMetadata.from_record(bad, "m.pt")


# -- observations and draws --------------------------------------------------------------------------


def test_sample_accepts_estimates_pressure_and_features(posterior: Posterior, estimate) -> None:
    draws = posterior.sample(estimate, 500, seed=4)
    assert draws.dims == ("draw", "param") and draws.shape == (500, 2)
    assert list(draws["param"].values) == ["source_range_m", "water_depth_m"]
    assert list(draws["units"].values) == ["m", "m"]
    assert list(draws["long_name"].values) == ["source range", "water depth"]
    assert draws.attrs["long_name"] == "posterior draws"
    values = draws.values
    assert np.all((values[:, 0] > 1500) & (values[:, 0] < 2500) & (values[:, 1] > 90) & (values[:, 1] < 110))
    # the same observation in the three forms gives the same draws
    from_pressure = posterior.sample(estimate.pressure * np.exp(0.7j), 500, seed=4)
    x = posterior.observation_model.features_from_pressure(estimate.pressure)
    from_features = posterior.sample(x, 500, seed=4)
    np.testing.assert_allclose(from_pressure.values, values, rtol=1e-9)
    as_data_array = xr.DataArray(estimate.pressure.T, dims=("receiver", "freq"))  # any dim order
    np.testing.assert_allclose(posterior.sample(as_data_array, 500, seed=4).values, values, rtol=1e-9)
    np.testing.assert_allclose(from_features.values, values, rtol=1e-9)
    assert not np.allclose(posterior.sample(estimate, 500, seed=5).values, values)


def test_invert_recovers_the_truth_of_a_synthetic_recording(posterior: Posterior, estimate) -> None:
    result = posterior.invert(estimate, n=4000, seed=0)
    assert result.warnings == []
    summary = result.summary
    assert list(summary["level"].values) == [0.9, 0.95]
    for j, name in enumerate(posterior.param_names):
        low, high = summary["eti_low"].values[j, 1], summary["eti_high"].values[j, 1]
        assert low < TRUTH[name] < high, (name, low, high)
    # informative: the 95% interval of the range is well inside the prior's 95% width (950 m)
    width = summary["eti_high"].values[0, 1] - summary["eti_low"].values[0, 1]
    assert width < 600.0
    assert result.metadata["seed"] == 0 and result.metadata["scenario"]["name"] == "tiny-pekeris"
    table = result.table()
    assert table.splitlines()[0].split() == ["parameter", "units", "mean", "median", "90%", "interval", "95%", "interval"]
    assert result.observation.n_snapshots == 19
    np.testing.assert_allclose(result.observation.effective_snr_db - result.observation.snr_db, 10 * math.log10(19))


def test_a_random_seed_is_drawn_and_recorded(posterior: Posterior, estimate) -> None:
    first = posterior.invert(estimate, n=50)
    again = posterior.invert(estimate, n=50, seed=first.metadata["seed"])
    np.testing.assert_array_equal(first.samples.values, again.samples.values)


def test_mismatched_observations_name_both_sides(posterior: Posterior, scenario, estimate) -> None:
    synthetic = synthesize(scenario, TRUTH, duration_s=20.0, sample_rate_hz=400.0, snr_db=20.0, runner=fake_pressure)
    other_tones = extract_tonals(synthetic.recording, [50.0, 90.0], config=TonalConfig(min_snr_db=-100.0))
    with pytest.raises(DataError, match=r"tones \[50, 90\] Hz do not match the tones \[50, 80\] Hz of model"):
        posterior.prepare(other_tones)
    from acoustic_inv.recordings import Recording

    moved = Recording(synthetic.recording.pressure, 400.0, (20.0, 50.0, 75.0), (50.0, 80.0), "moved.wav")
    with pytest.raises(DataError, match=r"moved\.wav: receiver depths \[20, 50, 75\] m do not match the depths "
                                        r"\[25, 50, 75\] m of model .*'tiny-pekeris'"):
        posterior.prepare(extract_tonals(moved))
    with pytest.raises(DataError, match=r"moved\.wav: receiver depths"):
        posterior.check_recording(moved)
    two = Recording(synthetic.recording.pressure[:, :2], 400.0, None, None, "two.wav")
    with pytest.raises(DataError, match=r"two\.wav: 2 channels, but model .* expects 3 receivers at depths \[25, 50, 75\]"):
        posterior.check_recording(two)
    tones = Recording(synthetic.recording.pressure, 400.0, None, (50.0, 112.0), "tones.wav")
    with pytest.raises(DataError, match=r"tones\.wav: its source tones \[50, 112\] Hz lack \[80\] Hz"):
        posterior.check_recording(tones)
    assert "gives no receiver depths" in posterior.check_recording(
        Recording(synthetic.recording.pressure, 400.0, None, None, "nodepth.wav"))[0]
    with pytest.raises(DataError, match=r"pressure of shape \(3, 2\).*expects \(n_freq, n_receiver\) = \(2, 3\)"):
        posterior.prepare(np.ones((3, 2), dtype=complex))
    with pytest.raises(DataError, match=r"feature vector of length 9: .* takes 10 features"):
        posterior.prepare(np.zeros(9))
    with pytest.raises(DataError, match="NaN"):
        posterior.prepare(np.full((2, 3), np.nan, dtype=complex))


def test_out_of_distribution_warnings(posterior: Posterior, scenario) -> None:
    far = np.full(posterior.observation_model.n_features, 3.0)  # no unit vector has such features
    result = posterior.invert(far, n=100, seed=0)
    assert len(result.warnings) == 1 and "atypical of the training data" in result.warnings[0]
    assert result.observation.typicality > posterior.metadata.typicality.threshold(0.999)
    # 20 s of -2 dB per snapshot: 9 snapshots give about 7.5 dB, below the training 10-25 dB
    synthetic = synthesize(scenario, TRUTH, duration_s=20.0, sample_rate_hz=400.0, snr_db=-2.0, seed=1,
                           runner=fake_pressure)
    faint = extract_tonals(synthetic.recording, scenario.freqs_hz, config=TonalConfig(min_snr_db=-20.0))
    warnings = posterior.invert(faint, n=100, seed=0).warnings
    snr_warnings = [w for w in warnings if "below the training SNR range [10, 25] dB" in w]
    assert len(snr_warnings) == 2 and snr_warnings[0].startswith("tone 50 Hz: SNR ")


# -- the predictive check ----------------------------------------------------------------------------


def test_bartlett_power() -> None:
    rng = np.random.default_rng(0)
    d = rng.normal(size=(2, 4)) + 1j * rng.normal(size=(2, 4))
    np.testing.assert_allclose(bartlett_power(d * np.array([[2 - 1j], [0.1j]]), d), 1.0)
    orthogonal = np.stack([np.array([d[0, 1], -d[0, 0], 0, 0]).conj(), np.array([d[1, 1], -d[1, 0], 0, 0]).conj()])
    np.testing.assert_allclose(bartlett_power(orthogonal, d), 0.0, atol=1e-12)
    assert np.all(np.isnan(bartlett_power(np.zeros((2, 4)), d)))


def test_predictive_check_prefers_posterior_draws(posterior: Posterior, scenario, estimate) -> None:
    result = posterior.invert(estimate, n=200, seed=1)
    check = posterior.predictive_check(result, 12, runner=fake_pressure)
    assert check.bartlett.shape == (12, 2) and check.n_failed == 0 and result.check is check
    assert np.all((check.bartlett >= 0) & (check.bartlett <= 1 + 1e-12))
    rng = np.random.default_rng(0)
    prior = scenario.prior.sample(rng, 12)
    from acoustic_inv.simulation import Simulator

    simulator = Simulator(scenario, runner=fake_pressure)
    prior_power = np.array([bartlett_power(simulator.run_engine(t), estimate.pressure) for t in prior])
    assert np.median(check.bartlett) > np.median(prior_power) + 0.2
    assert np.median(check.bartlett) > 0.7
    lines = check.table().splitlines()
    assert lines[0] == "posterior predictive check: 12 draws re-simulated with fake_pressure"
    assert lines[3].split()[0] == "50"


# -- files -------------------------------------------------------------------------------------------


def test_netcdf_has_the_inference_data_layout(posterior: Posterior, estimate, tmp_path: Path) -> None:
    result = posterior.invert(estimate, n=300, seed=2)
    posterior.predictive_check(result, 3, runner=fake_pressure)
    path = result.to_netcdf(tmp_path / "post.nc")
    assert [p.name for p in tmp_path.iterdir()] == ["post.nc"], "no temporary file left"
    with netCDF4.Dataset(path) as nc:  # what arviz.from_netcdf walks: one xarray dataset per group
        assert list(nc.groups) == ["posterior", "summary", "observed_data", "predictive_check"]
        group = nc.groups["posterior"]
        assert dict(group.dimensions.items()).keys() == {"chain", "draw"}
        assert group.dimensions["chain"].size == 1 and group.dimensions["draw"].size == 300
        for name in posterior.param_names:
            assert group.variables[name].dimensions == ("chain", "draw")
            assert group.variables[name].units == "m"
        assert nc.getncattr("seed") == 2 and nc.getncattr("scenario") == "tiny-pekeris"
    back = read_posterior(path)
    np.testing.assert_array_equal(back.samples.values, result.samples.values)
    assert list(back.samples["units"].values) == ["m", "m"]
    xr.testing.assert_allclose(back.summary, result.summary)
    assert back.observed["x"].shape == (10,) and back.observed.attrs["n_snapshots"] == 19
    np.testing.assert_allclose(back.observed["pressure_real"].values + 1j * back.observed["pressure_imag"].values,
                               estimate.pressure)
    assert back.check is not None and back.check["bartlett"].shape == (3, 2)
    for group in ("posterior", "summary", "observed_data", "predictive_check"):
        with xr.open_dataset(path, group=group) as ds:
            for name, variable in ds.variables.items():
                if variable.dtype.kind in "fiuc":  # names (strings) carry no units
                    assert "units" in variable.attrs, (group, name)


def test_json_output(posterior: Posterior, tmp_path: Path) -> None:
    far = np.full(posterior.observation_model.n_features, 3.0)
    result = posterior.invert(far, n=200, seed=3)
    path = result.to_json(tmp_path / "post.json")
    document = json.loads(path.read_text())
    assert document["format"] == "acoustic-inv-posterior" and document["seed"] == 3
    assert document["warnings"] == result.warnings and len(document["warnings"]) == 1
    assert set(document["summary"]["parameters"]) == {"source_range_m", "water_depth_m"}
    assert document["summary"]["parameters"]["water_depth_m"]["units"] == "m"
    assert document["observation"]["kind"] == "features" and document["predictive_check"] is None
    assert document["model"]["content_sha256"] == load_checkpoint(posterior.path)["content_sha256"]


def test_read_posterior_refuses_other_files(tmp_path: Path) -> None:
    other = tmp_path / "other.nc"
    xr.Dataset({"a": ("x", [1.0])}).to_netcdf(other)
    with pytest.raises(DataError, match=r"other\.nc: not an acoustic-inv posterior file"):
        read_posterior(other)
    text = tmp_path / "text.nc"
    text.write_text("not netcdf")
    with pytest.raises(DataError, match=r"text\.nc: cannot read as a posterior file"):
        read_posterior(text)
    with pytest.raises(DataError, match="no such file"):
        read_posterior(tmp_path / "none.nc")


def test_the_shipped_default_model_loads_and_samples_inside_the_prior() -> None:
    from acoustic_inv.models import EnsembleModel

    posterior = Posterior.load()
    assert posterior.metadata.scenario_name == "swellex96"
    assert isinstance(posterior.model, EnsembleModel) and len(posterior.model.members) == 3
    rng = np.random.default_rng(0)
    shape = (len(posterior.freqs_hz), len(posterior.receiver_depths_m))
    pressure = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    draws = posterior.sample(pressure, 300, seed=0)
    prior = posterior.metadata.scenario().prior
    low, high = np.asarray(prior.ppf(np.zeros((1, len(prior.units)))))[0], np.asarray(prior.ppf(np.ones((1, len(prior.units)))))[0]
    assert draws.sizes == {"draw": 300, "param": 7}
    assert np.all(draws.values >= low - 1e-9) and np.all(draws.values <= high + 1e-9)

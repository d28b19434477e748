"""Synthetic recordings: the tones extracted from a recording give back the engine's features.

This is the sign-convention link between simulation (Acoustics Toolbox, ``exp(+i omega t)``) and the
tonal extraction of recordings: with the opposite convention the extracted vectors would be the
complex conjugates of the simulated ones, and the features would differ.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import scenario_texts
from acoustic_inv.errors import ConfigError
from acoustic_inv.observation import ObservationModel
from acoustic_inv.recordings import read_recording
from acoustic_inv.scenario import scenario_from_text
from acoustic_inv.synth import resolve_theta, synthesize, write_synthetic
from acoustic_inv.tonals import extract_tonals

THETA = {"source_range_m": 2600.0, "water_depth_m": 104.0, "bottom_sound_speed_mps": 1730.0}


@pytest.fixture(scope="module")
def scenario():
    return scenario_from_text(scenario_texts.PEKERIS)


@pytest.fixture(scope="module")
def clean(scenario):
    """A noise-free recording from the real KRAKEN engine."""
    return synthesize(scenario, THETA, duration_s=24.0, sample_rate_hz=400.0, snr_db=None,
                      source_level=[3.0, 0.02], source_phase_rad=[1.0, -2.5])


def test_extracted_features_match_the_engine_features_at_high_snr(scenario) -> None:
    synthetic = synthesize(scenario, THETA, duration_s=40.0, sample_rate_hz=400.0, snr_db=[35.0, 30.0], seed=3)
    estimate = extract_tonals(synthetic.recording, scenario.freqs_hz)
    observation = ObservationModel.from_scenario(scenario)
    recorded = observation.features_from_pressure(estimate.pressure)
    simulated = observation.features_from_pressure(synthetic.pressure)
    conjugated = observation.features_from_pressure(synthetic.pressure.conj())
    np.testing.assert_allclose(recorded, simulated, atol=0.02)
    # the check has teeth: the other phase convention is far off
    assert np.max(np.abs(conjugated - simulated)) > 0.3
    # the per-snapshot SNR is what was asked for
    np.testing.assert_allclose(estimate.snr_db, [35.0, 30.0], atol=1.0)


def test_noise_free_recording_gives_the_scaled_pressure_back(scenario, clean) -> None:
    estimate = extract_tonals(clean.recording, scenario.freqs_hz)
    expected = clean.source_factor[:, None] * clean.pressure
    ratio = estimate.pressure / expected
    # one common phase per tone, unit magnitude
    np.testing.assert_allclose(np.abs(ratio), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.angle(ratio / ratio[:, :1]), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.abs(clean.source_factor), [3.0, 0.02])
    observation = ObservationModel.from_scenario(scenario)
    np.testing.assert_allclose(observation.features_from_pressure(estimate.pressure),
                               observation.features_from_pressure(clean.pressure), atol=1e-9)


def test_time_series_follows_the_acoustics_toolbox_convention(clean) -> None:
    """Element r, tone f: |a p| cos(2 pi f t + arg(a p)), checked sample by sample for one tone."""
    recording = clean.recording
    t = recording.times_s()
    amplitude = clean.source_factor[:, None] * clean.pressure
    expected = sum(np.abs(amplitude[f, 2]) * np.cos(2 * np.pi * freq * t + np.angle(amplitude[f, 2]))
                   for f, freq in enumerate((50.0, 80.0)))
    np.testing.assert_allclose(recording.pressure[:, 2], expected, atol=1e-9 * np.abs(amplitude).max())


def test_write_synthetic_round_trip(clean, tmp_path: Path) -> None:
    path = write_synthetic(tmp_path / "syn.wav", clean)
    back = read_recording(path)
    assert back.receiver_depths_m == (20.0, 40.0, 60.0, 80.0) and back.source_tones_hz == (50.0, 80.0)
    assert back.sample_rate_hz == 400.0 and back.n_time == clean.recording.n_time
    np.testing.assert_allclose(back.pressure, clean.recording.pressure, rtol=1e-6, atol=1e-6 * np.abs(clean.recording.pressure).max())
    comment = json.loads(json.loads(path.with_suffix(".json").read_text())["comment"])
    assert comment["synthetic"] is True and comment["theta"] == clean.truth()
    assert comment["snr_db"] == [None, None]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn.json", "syn.wav"]


def test_theta_by_name_fills_nominal_values(scenario) -> None:
    values = resolve_theta(scenario, {"water_depth_m": 95.0})
    assert values.tolist() == [2000.0, 95.0, 1700.0]  # the scenario's source range and half-space speed
    with pytest.raises(ConfigError, match="unknown parameter 'depth'"):
        resolve_theta(scenario, {"depth": 1.0})
    with pytest.raises(ConfigError, match=r"theta of shape \(2,\)"):
        resolve_theta(scenario, [1.0, 2.0])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sample_rate_hz": 150.0}, r"sample_rate_hz = 150.0: expected more than twice the highest tone \(160 Hz\)"),
    ({"source_level": 2.0}, "give snr_db or source_level, not both"),
    ({"snr_db": [10.0, 20.0, 30.0]}, r"snr_db = \[10.0, 20.0, 30.0\]: expected one number or one per tone \(2\)"),
    ({"noise_std": 0.0}, "noise_std = 0.0"),
    ({"duration_s": 0.0}, "duration_s = 0.0"),
])
def test_bad_arguments(scenario, kwargs, message) -> None:
    arguments = {"duration_s": 1.0, "sample_rate_hz": 400.0, "snr_db": 20.0, **kwargs}
    with pytest.raises(ConfigError, match=message):
        synthesize(scenario, THETA, **arguments)

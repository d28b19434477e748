"""Tests of acoustic_inv.scenario: the shipped scenarios, validation messages and the parameter map."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import scenario_texts
from acoustic_inv.errors import ConfigError
from acoustic_inv.scenario import (
    PARAMETERS,
    apply_parameters,
    list_scenarios,
    load_scenario,
    scenario_from_text,
)

SHIPPED = ("pekeris-bellhop", "swellex96", "vina-gi")


def test_shipped_scenarios_load() -> None:
    assert set(SHIPPED) <= set(list_scenarios())
    for name in SHIPPED:
        scenario = load_scenario(name)
        assert scenario.name == name
        nominal = scenario.nominal_theta()
        assert nominal.shape == (len(scenario.prior),)
        scenario.geometry(nominal)  # the nominal point is a valid environment


def test_swellex96_prior_covers_the_issue_ranges() -> None:
    scenario = load_scenario("swellex96")
    bounds = {p.name: (p.low, p.high) for p in scenario.prior.params}
    assert bounds["source_range_m"] == (500.0, 10000.0)
    assert bounds["source_depth_m"] == (2.0, 120.0)
    assert bounds["water_depth_m"] == (213.0, 240.0)
    assert bounds["sediment_sound_speed_mps"] == (1500.0, 1700.0)
    assert bounds["sediment_thickness_m"] == (5.0, 50.0)
    assert bounds["sediment_density_g_cm3"] == (1.3, 2.2)
    assert bounds["sediment_attenuation_db_per_m_khz"] == (0.01, 1.0)
    assert scenario.engine.name == "kraken"
    assert len(scenario.array.receiver_depths_m) == 21
    assert set(scenario.freqs_hz) <= {49, 64, 79, 94, 112, 130, 148, 166, 201, 235, 283, 338, 388}


def test_vina_gi_matches_the_paper_code() -> None:
    scenario = load_scenario("vina-gi")
    assert scenario.prior.names == ("water_depth_m", "sediment_sound_speed_mps")
    assert [(p.low, p.high, p.distribution.kind) for p in scenario.prior.params] == [
        (200.5, 236.5, "uniform"), (1532.0, 1592.0, "uniform")]
    assert len(scenario.array.receiver_depths_m) == 5 and max(scenario.array.receiver_depths_m) < 200.0
    assert len(scenario.freqs_hz) == 7
    assert scenario.noise.model == "complex_gaussian"


def test_pekeris_bellhop_is_a_halfspace_bellhop_case() -> None:
    scenario = load_scenario("pekeris-bellhop")
    assert scenario.engine.name == "bellhop" and scenario.environment.layers == ()
    assert 1000.0 <= min(scenario.freqs_hz) and max(scenario.freqs_hz) <= 2000.0
    assert set(scenario.prior.names) == {"source_range_m", "source_depth_m", "bottom_sound_speed_mps",
                                         "bottom_density_g_cm3"}


def test_name_defaults_to_the_file_stem_and_paths_resolve(tmp_path: Path) -> None:
    text = scenario_texts.PEKERIS.replace('name = "pekeris-test"\n', "", 1)
    path = scenario_texts.write(tmp_path, text, "my-case.toml")
    assert load_scenario(path).name == "my-case"
    assert load_scenario(str(path)).sha256 == load_scenario(path).sha256
    with pytest.raises(ConfigError, match="no-such-scenario"):
        load_scenario("no-such-scenario")


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        scenario_from_text(text, source="case.toml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("case.toml")
    return message


BASE = scenario_texts.PEKERIS


@pytest.mark.parametrize("old, new, expected", [
    # misspelt keys, in every kind of table
    ('model = "complex_gaussian"', 'modle = "complex_gaussian"', "unknown key 'noise.modle'"),
    ("[tones]\nfreqs_hz", "[tones]\nfreq_hz", "unknown key 'tones.freq_hz'"),
    ("[prior.water_depth_m]\nlow", "[prior.water_depth_m]\nlwo", "unknown key 'prior.water_depth_m.lwo'"),
    ("[prior.water_depth_m]", "[prior.water_dept_m]", "unknown parameter 'prior.water_dept_m'"),
    ("water_depth_m = 100.0", "water_depht_m = 100.0", "unknown key 'environment.water_depht_m'"),
    ("[simulation]", "[simulaton]", "unknown table [simulaton]"),
    # negative depths
    ("depth_m = 30.0", "depth_m = -5.0", "source.depth_m = -5: expected a depth below the surface"),
    ("[20.0, 40.0", "[20.0, -40.0", r"array.receiver_depths_m[1] = -40: expected a depth below the surface"),
    ("[prior.water_depth_m]\nlow = 90.0", "[prior.water_depth_m]\nlow = -90.0",
     "prior.water_depth_m.low = -90: expected a water depth"),
    # bounds in the wrong order
    ("low = 1000.0\nhigh = 5000.0", "low = 5000.0\nhigh = 1000.0",
     "prior.source_range_m: low = 5000 is not below high = 1000"),
    # unknown engine
    ('name = "kraken"', 'name = "krakn"', "engine.name = 'krakn': expected one of"),
    # other inconsistencies
    ("low = 90.0", "low = 70.0", "prior.water_depth_m.low = 70 m puts receiver array.receiver_depths_m[3] = 80 m"),
    ("reference_receiver = 1", "reference_receiver = 7", "observation.reference_receiver = 7"),
    ('features = "unit_pressure"', 'features = "eigen"', "observation.features = 'eigen'"),
    ("[50.0, 80.0]", "[80.0, 50.0]", "tones.freqs_hz[1] = 50: expected increasing frequencies"),
    ("chunk_size = 4", "chunk_size = 0", "simulation.chunk_size = 0"),
    ("mean = 1700.0\nstd = 50.0", "mean = 1700.0", "missing key 'prior.bottom_sound_speed_mps.std'"),
    ("[prior.water_depth_m]\n", '[prior.water_depth_m]\nunits = "km"\n', "prior.water_depth_m.units = 'km'"),
])
def test_errors_name_the_key(old: str, new: str, expected: str) -> None:
    assert old in BASE
    assert expected in _error(BASE.replace(old, new, 1))


def test_sediment_parameter_needs_a_layer() -> None:
    text = BASE + "\n[prior.sediment_thickness_m]\nlow = 5.0\nhigh = 20.0\n"
    assert "prior.sediment_thickness_m: the environment has no sediment layer" in _error(text)


def test_bellhop_refuses_layers() -> None:
    text = scenario_texts.LAYERED.replace('name = "kraken"', 'name = "bellhop"')
    assert "engine.name = 'bellhop' models a half-space bottom only" in _error(text)


def test_source_below_the_shallowest_floor() -> None:
    text = BASE + "\n[prior.source_depth_m]\nlow = 5.0\nhigh = 95.0\n"
    assert "prior.source_depth_m.high = 95 m is below the shallowest sea floor" in _error(text)


def test_prior_corner_that_breaks_the_environment() -> None:
    # A sediment top speed of 7990 m/s plus the layer's gradient leaves the allowed seabed range.
    text = scenario_texts.LAYERED + "\n[prior.sediment_sound_speed_mps]\nlow = 1500.0\nhigh = 7990.0\n"
    message = _error(text)
    assert re.search(r"\[prior\] at the upper bounds gives an invalid environment: .*sound_speed_bottom_mps", message)


def test_not_toml_and_missing_tables() -> None:
    assert "not valid TOML" in _error("[scenario\n")
    assert "missing table [tones]" in _error(BASE.replace("[tones]\nfreqs_hz = [50.0, 80.0]\n", ""))
    assert "missing table [prior]" in _error(BASE.split("[prior.source_range_m]")[0])


def test_sediment_parameters_keep_the_gradient() -> None:
    scenario = scenario_from_text(scenario_texts.LAYERED + "\n[prior.sediment_sound_speed_mps]\n"
                                  "low = 1500.0\nhigh = 1700.0\n[prior.sediment_thickness_m]\nlow = 5.0\n"
                                  "high = 40.0\n")
    gradient = (1570.0 - 1550.0) / 10.0
    geometry = apply_parameters(scenario, {"sediment_sound_speed_mps": 1600.0, "sediment_thickness_m": 30.0,
                                           "sediment_density_g_cm3": 1.9,
                                           "sediment_attenuation_db_per_m_khz": 0.5})
    layer = geometry.environment.layers[0]
    assert layer.sound_speed_top_mps == 1600.0
    assert layer.thickness_m == 30.0
    assert layer.sound_speed_bottom_mps == pytest.approx(1600.0 + gradient * 30.0)
    assert (layer.density_g_cm3, layer.attenuation_db_per_m_khz) == (1.9, 0.5)
    # Untouched parts stay as in the scenario.
    assert geometry.environment.halfspace == scenario.environment.halfspace
    assert geometry.source_depth_m == 30.0


def test_other_parameters_map_where_documented() -> None:
    scenario = scenario_from_text(BASE)
    geometry = apply_parameters(scenario, {
        "source_range_m": 4000.0, "source_depth_m": 12.0, "water_depth_m": 95.0,
        "bottom_sound_speed_mps": 1650.0, "bottom_density_g_cm3": 1.5,
        "bottom_attenuation_db_per_m_khz": 0.3, "water_sound_speed_shift_mps": 2.0})
    env = geometry.environment
    assert (geometry.source_range_m, geometry.source_depth_m, env.water_depth_m) == (4000.0, 12.0, 95.0)
    assert (env.halfspace.sound_speed_mps, env.halfspace.density_g_cm3,
            env.halfspace.attenuation_db_per_m_khz) == (1650.0, 1.5, 0.3)
    assert env.ssp.speed_mps == (1502.0,)
    with pytest.raises(KeyError):
        apply_parameters(scenario, {"not_a_parameter": 1.0})


def test_every_parameter_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "scenarios.md").read_text(encoding="utf-8")
    for name, spec in PARAMETERS.items():
        assert f"`{name}`" in doc, name
        assert spec.units in doc


def test_nominal_theta_and_geometry_round_trip() -> None:
    scenario = scenario_from_text(BASE)
    np.testing.assert_array_equal(scenario.nominal_theta(), [2000.0, 100.0, 1700.0])
    geometry = scenario.geometry([3000.0, 105.0, 1750.0])
    assert geometry.source_range_m == 3000.0 and geometry.environment.water_depth_m == 105.0

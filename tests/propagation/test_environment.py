"""Validation of environments and of the TOML reader: every error names the field and the value."""

from pathlib import Path

import numpy as np
import pytest

from propagation.environment import (
    Environment, FluidLayer, HalfSpace, SoundSpeedProfile, check_frequencies, check_geometry,
    db_per_m_khz_to_db_per_wavelength, db_per_wavelength_to_db_per_m_khz)
from propagation.errors import InvalidEnvironmentError
from propagation.io import environment_from_dict, load_environment

DATA_DIR = Path(__file__).resolve().parents[2] / "data"

HS = HalfSpace(1700.0, 1.8, 0.3)


def iso(depth=100.0, **kw):
    return Environment(depth, SoundSpeedProfile.isovelocity(1500.0), HS, **kw)


@pytest.mark.parametrize("make, match", [
    (lambda: iso(-5.0), r"Environment.water_depth_m = -5.0: expected a positive water depth"),
    (lambda: iso(float("nan")), r"water_depth_m = nan: expected a finite number"),
    (lambda: HalfSpace(1700.0, 1800.0, 0.1), r"HalfSpace.density_g_cm3 = 1800.0: expected a density in g/cm\^3"),
    (lambda: HalfSpace(1.7, 1.8, 0.1), r"HalfSpace.sound_speed_mps = 1.7"),
    (lambda: FluidLayer(0.0, 1600, 1600, 1.5, 0.1), r"FluidLayer.thickness_m = 0.0: expected a positive"),
    (lambda: FluidLayer(10.0, 1600, 1600, 1.5, -0.1), r"FluidLayer.attenuation_db_per_m_khz = -0.1"),
    (lambda: SoundSpeedProfile((0.0, 10.0, 5.0), (1500, 1500, 1500)), r"depth_m\[2\] = 5.0: expected a depth greater than 10.0"),
    (lambda: SoundSpeedProfile((1.0,), (1500.0,)), r"first depth at the surface"),
    (lambda: SoundSpeedProfile((0.0, 10.0), (1500.0,)), r"speed_mps = '1 values': expected one per depth"),
    (lambda: SoundSpeedProfile((0.0,), (15.0,)), r"speed_mps = 15.0: expected a water sound speed"),
    (lambda: iso(layers=("sand",)), r"layers\[0\] = 'str': expected a FluidLayer"),
])
def test_bad_values_raise_errors_naming_field_and_value(make, match):
    with pytest.raises(InvalidEnvironmentError, match=match):
        make()


def test_water_profile_is_cut_at_the_floor_and_held_below_its_last_point():
    ssp = SoundSpeedProfile((0.0, 50.0, 150.0), (1500.0, 1490.0, 1480.0))
    z, c = iso(100.0).replace(ssp=ssp).water_ssp()
    np.testing.assert_allclose(z, [0.0, 50.0, 100.0])
    np.testing.assert_allclose(c, [1500.0, 1490.0, 1485.0])
    z, c = iso(200.0).replace(ssp=ssp).water_ssp()
    np.testing.assert_allclose(z, [0.0, 50.0, 150.0, 200.0])
    np.testing.assert_allclose(c[-1], 1480.0)


def test_geometry_and_frequency_checks():
    env = iso(100.0)
    assert check_geometry(env, 30, [10, 20], [1000]) == (30.0, (10.0, 20.0), (1000.0,))
    with pytest.raises(InvalidEnvironmentError, match=r"Receivers.depths_m\[1\] = 120.0: expected a depth inside"):
        check_geometry(env, 30, [10, 120], [1000])
    with pytest.raises(InvalidEnvironmentError, match=r"Source.depth_m\[0\] = -1.0"):
        check_geometry(env, -1, [10], [1000])
    with pytest.raises(InvalidEnvironmentError, match=r"Receivers.ranges_m = 0.0"):
        check_geometry(env, 30, [10], [0.0])
    with pytest.raises(InvalidEnvironmentError, match=r"Tones.freqs_hz = -3.0"):
        check_frequencies([100.0, -3.0])


def test_attenuation_unit_conversions_invert_each_other():
    a = db_per_wavelength_to_db_per_m_khz(0.5, 1700.0)
    assert a == pytest.approx(0.5 * 1000 / 1700)
    assert db_per_m_khz_to_db_per_wavelength(a, 1700.0) == pytest.approx(0.5)


def test_swellex96_environment_file_loads_with_the_published_seabed():
    env = load_environment(DATA_DIR / "scenarios" / "swellex96.toml")
    assert env.water_depth_m == 216.5
    assert [l.thickness_m for l in env.layers] == [23.5, 800.0]
    assert env.halfspace.sound_speed_mps == 5200.0
    assert env.bottom_depth_m == 1040.0
    z, c = env.water_ssp()
    assert z[-1] == 216.5 and 1485 < c[-1] < 1490 and c[0] > 1520


def test_toml_errors_name_the_file_and_key(tmp_path):
    good = {"water_depth_m": 100.0, "ssp": {"depth_m": [0.0], "speed_mps": [1500.0]},
            "halfspace": {"sound_speed_mps": 1700.0, "density_g_cm3": 1.8, "attenuation_db_per_m_khz": 0.1}}
    assert environment_from_dict(good).water_depth_m == 100.0
    bad = dict(good, water_dpeth_m=3.0)
    with pytest.raises(InvalidEnvironmentError, match=r"f.toml: unknown key 'environment.water_dpeth_m'"):
        environment_from_dict(bad, source="f.toml")
    bad = dict(good, halfspace={"sound_speed_mps": 1700.0, "density_g_cm3": 1.8})
    with pytest.raises(InvalidEnvironmentError, match=r"missing key 'environment.halfspace.attenuation_db_per_m_khz'"):
        environment_from_dict(bad, source="f.toml")
    bad = dict(good, layers=[{"thickness_m": -2.0, "sound_speed_top_mps": 1600.0, "sound_speed_bottom_mps": 1600.0,
                              "density_g_cm3": 1.5, "attenuation_db_per_m_khz": 0.1}])
    with pytest.raises(InvalidEnvironmentError, match=r"f.toml: \[environment.layers\[0\]\] FluidLayer.thickness_m = -2.0"):
        environment_from_dict(bad, source="f.toml")
    path = tmp_path / "broken.toml"
    path.write_text("[environment\nwater_depth_m = 3")
    with pytest.raises(InvalidEnvironmentError, match="broken.toml: not valid TOML"):
        load_environment(path)
    with pytest.raises(InvalidEnvironmentError, match="no such file"):
        load_environment(tmp_path / "missing.toml")

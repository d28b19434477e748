"""The Pekeris oracle checked against its own defining equations (independently of any engine)."""

import math

import numpy as np
import pytest
from scipy.integrate import quad

from propagation.environment import Environment, FluidLayer, HalfSpace, SoundSpeedProfile
from propagation.errors import InvalidEnvironmentError, UnsupportedEnvironmentError
from propagation.pekeris import PekerisWaveguide

CASE = PekerisWaveguide(water_depth_m=100.0, water_speed_mps=1500.0, bottom_speed_mps=1700.0,
                        bottom_density_g_cm3=1.8, bottom_attenuation_db_per_wavelength=0.5)
LOSSLESS = PekerisWaveguide(100.0, 1500.0, 1700.0, 1.8)


def test_mode_count_matches_the_cutoff_rule():
    # Mode m exists when g_max D exceeds (m - 1/2) pi, g_max = sqrt(k1^2 - k2^2).
    f = 200.0
    k1, k2 = 2 * math.pi * f / 1500.0, 2 * math.pi * f / 1700.0
    expected = math.floor(math.sqrt(k1**2 - k2**2) * 100.0 / math.pi + 0.5)
    assert LOSSLESS.wavenumbers(f).size == expected == 13
    assert CASE.wavenumbers(f).size == expected


def test_wavenumbers_solve_the_characteristic_equation_and_lie_between_k2_and_k1():
    f = 200.0
    kr = CASE._wavenumbers(f)
    k1, k2 = CASE._k(f)
    residual = [abs(CASE._characteristic(k, k1, k2)[0]) for k in kr]
    assert max(residual) < 1e-10
    assert np.all(np.diff(kr.real) < 0)
    assert np.all((kr.real > k2.real) & (kr.real < k1))
    # Attenuation only in the bottom: the loss grows with mode number (steeper modes see more bottom).
    assert np.all(kr.imag > 0) and np.all(np.diff(kr.imag) > 0)
    # Public wavenumbers follow the Acoustics Toolbox sign (imaginary parts <= 0).
    np.testing.assert_allclose(CASE.wavenumbers(f), np.conj(kr))


def test_modes_are_normalized_and_continuous_at_the_sea_floor():
    f, d = 150.0, 100.0
    kr, _ = LOSSLESS.mode_shapes(f, np.array([0.0]))
    for m in range(kr.size):
        def psi(z, m=m):
            return LOSSLESS.mode_shapes(f, np.array([z]))[1][0, m].real
        water = quad(lambda z: psi(z) ** 2 / 1.0, 0.0, d, limit=200)[0]
        bottom = quad(lambda z: psi(z) ** 2 / 1.8, d, d + 3000.0, limit=400)[0]
        assert water + bottom == pytest.approx(1.0, rel=1e-6)
        h = 1e-6
        above, below = psi(d - h), psi(d + h)
        assert above == pytest.approx(below, abs=1e-5)
        # (1/rho) dpsi/dz continuous
        dabove = (psi(d - h) - psi(d - 2 * h)) / h / 1.0
        dbelow = (psi(d + 2 * h) - psi(d + h)) / h / 1.8
        assert dabove == pytest.approx(dbelow, rel=1e-3, abs=1e-6)
        assert psi(0.0) == 0.0


def test_rigid_dense_bottom_limit_gives_the_ideal_waveguide():
    # rho2 -> infinity makes the bottom rigid: g1 D = (m - 1/2) pi exactly.
    guide = PekerisWaveguide(100.0, 1500.0, 3000.0, 4.9e6)
    f = 100.0
    k = 2 * math.pi * f / 1500.0
    kr = guide.wavenumbers(f)
    ideal = np.sqrt(k**2 - ((np.arange(1, kr.size + 1) - 0.5) * math.pi / 100.0) ** 2)
    np.testing.assert_allclose(kr.real, ideal, atol=1e-6)


def test_field_is_reciprocal_and_spreads_cylindrically():
    p_ab = CASE.pressure(200.0, 30.0, np.array([70.0]), np.array([1500.0]))
    p_ba = CASE.pressure(200.0, 70.0, np.array([30.0]), np.array([1500.0]))
    np.testing.assert_allclose(p_ab, p_ba, rtol=1e-12)
    # Mode 1 alone decays as 1/sqrt(r): the full-field level averaged over depth falls ~10 dB/decade.
    z = np.linspace(1, 99, 99)
    lossless = LOSSLESS.pressure(50.0, 50.0, z, np.array([1000.0, 10000.0]))
    mean_power = np.mean(np.abs(lossless) ** 2, axis=0)
    assert 10 * np.log10(mean_power[0] / mean_power[1]) == pytest.approx(10.0, abs=1.5)


def test_from_environment_round_trip_and_refusals():
    hs = HalfSpace(1700.0, 1.8, 0.5 * 1000.0 / 1700.0)
    env = Environment(100.0, SoundSpeedProfile.isovelocity(1500.0), hs)
    guide = PekerisWaveguide.from_environment(env)
    assert guide.bottom_attenuation_db_per_wavelength == pytest.approx(0.5)
    layered = env.replace(layers=(FluidLayer(10.0, 1600.0, 1600.0, 1.5, 0.1),))
    with pytest.raises(UnsupportedEnvironmentError, match="layer"):
        PekerisWaveguide.from_environment(layered)
    gradient = env.replace(ssp=SoundSpeedProfile((0.0, 100.0), (1500.0, 1490.0)))
    with pytest.raises(UnsupportedEnvironmentError, match="isovelocity"):
        PekerisWaveguide.from_environment(gradient)
    with pytest.raises(InvalidEnvironmentError, match="bottom_speed_mps"):
        PekerisWaveguide(100.0, 1500.0, 1400.0, 1.8)

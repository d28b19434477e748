"""The public API: shapes, coordinates, units, conventions and input validation."""

import math

import numpy as np
import pelagic
import pytest

import propagation
from propagation.backends import get_engine
from propagation.environment import (Environment, FluidLayer, HalfSpace, SoundSpeedProfile,
                                     db_per_wavelength_to_db_per_m_khz)
from propagation.errors import InvalidEnvironmentError

PEKERIS = Environment(100.0, SoundSpeedProfile.isovelocity(1500.0),
                      HalfSpace(1700.0, 1.8, db_per_wavelength_to_db_per_m_khz(0.5, 1700.0)), name="Pekeris")
LOSSLESS = PEKERIS.replace(halfspace=HalfSpace(1700.0, 1.8, 0.0))
# A gradient profile and a sediment layer, small enough to run in milliseconds.
LAYERED = Environment(120.0, SoundSpeedProfile((0.0, 30.0, 120.0), (1510.0, 1495.0, 1490.0)),
                      HalfSpace(2200.0, 2.2, 0.1), layers=(FluidLayer(15.0, 1600.0, 1700.0, 1.7, 0.3),),
                      name="layered")
DEPTHS = np.array([15.0, 40.0, 65.0, 90.0])


def _has_attrs(obj):
    return {"units", "long_name"} <= set(obj.attrs)


@pytest.mark.parametrize("engine", ["kraken", "krakenc", "bellhop"])
def test_pressure_layout_units_and_attributes(engine):
    p = propagation.pressure(PEKERIS, 30.0, DEPTHS, 2000.0, [100.0, 150.0], engine=engine)
    assert p.dims == ("freq", "receiver") and p.shape == (2, 4) and p.dtype == np.complex128
    np.testing.assert_array_equal(p["freq"], [100.0, 150.0])
    np.testing.assert_array_equal(p["receiver"], np.arange(4))
    np.testing.assert_array_equal(p["depth"], DEPTHS)
    assert p["depth"].dims == ("receiver",)
    assert _has_attrs(p) and all(_has_attrs(p[c]) for c in ("freq", "receiver", "depth"))
    assert p.attrs["engine"] == engine and p.attrs["engine_version"] == f"pelagic {pelagic.__version__}"
    assert p.attrs["range_m"] == 2000.0 and p.attrs["source_depth_m"] == 30.0
    tl = -20 * np.log10(np.abs(p.values))
    assert np.all((tl > 30.0) & (tl < 90.0))


@pytest.mark.parametrize("engine", ["kraken", "bellhop"])
def test_receivers_in_any_order_and_repeated_match_by_index(engine):
    env = LAYERED if engine == "kraken" else PEKERIS
    ordered = propagation.pressure(env, 30.0, DEPTHS, 1500.0, [80.0], engine=engine)
    shuffled = [90.0, 15.0, 65.0, 15.0, 40.0]
    p = propagation.pressure(env, 30.0, shuffled, 1500.0, [80.0], engine=engine)
    np.testing.assert_array_equal(p.values, ordered.values[:, [3, 0, 2, 0, 1]])
    np.testing.assert_array_equal(p["depth"], shuffled)
    np.testing.assert_array_equal(p.values[:, 1], p.values[:, 3])


def test_kraken_wrapper_returns_pelagic_numbers_unchanged():
    """The lost-mode grid adds mode samples but must not change the field: compare with a bare case."""
    engine = get_engine("kraken")
    freqs = (60.0, 90.0)
    ours = propagation.pressure(LAYERED, 30.0, DEPTHS, 1500.0, freqs).values
    options = engine.resolve_options({}, "pressure")
    meshes, _ = engine._meshes(LAYERED, freqs, options)
    doc = engine.document(LAYERED, freqs, 30.0, DEPTHS, np.array([1500.0]),
                          np.unique(np.r_[30.0, DEPTHS]), meshes, 1500.0)
    bare = pelagic.kraken.Case.from_dict(doc).run()
    np.testing.assert_array_equal(ours, np.stack([f.field.pressure[0, :, 0] for f in bare.frequencies]))


@pytest.mark.parametrize("engine", ["kraken", "bellhop"])
def test_tl_field_is_the_pressure_in_db_on_the_grid(engine):
    ranges = np.array([3000.0, 1000.0, 2000.0])  # any order
    tl = propagation.tl_field(PEKERIS, 30.0, 120.0, DEPTHS, ranges, engine=engine)
    assert tl.dims == ("depth", "range") and tl.shape == (4, 3) and tl.dtype == np.float64
    assert tl.attrs["units"] == "dB" and _has_attrs(tl) and _has_attrs(tl["depth"]) and _has_attrs(tl["range"])
    assert tl.attrs["freq_hz"] == 120.0 and tl.attrs["engine"] == engine
    np.testing.assert_array_equal(tl["range"], ranges)
    # Not bitwise: KRAKEN refines its eigenvalues for the largest range of the call, BELLHOP sizes its
    # beam fan and box by it.
    for j, r in enumerate(ranges):
        p = propagation.pressure(PEKERIS, 30.0, DEPTHS, r, [120.0], engine=engine)
        np.testing.assert_allclose(tl.values[:, j], -20 * np.log10(np.abs(p.values[0])), atol=0.05)


def test_modes_layout_normalization_and_convention():
    freq = 75.0
    m = propagation.modes(LOSSLESS, freq)
    n = m.sizes["mode"]
    assert m["shape"].dims == ("mode", "depth") and n == 5
    np.testing.assert_array_equal(m["mode"], np.arange(1, n + 1))
    assert all(_has_attrs(m[v]) for v in ("wavenumber", "phase_speed", "group_speed", "attenuation", "shape"))
    k = m["wavenumber"].values
    assert np.all(np.diff(k.real) < 0) and np.all(k.imag <= 0)
    np.testing.assert_allclose(m["phase_speed"], 2 * math.pi * freq / k.real, rtol=1e-9)
    # KRAKEN normalization: int psi^2 / rho dz = 1, the half-space tail included analytically.
    z = m["depth"].values
    assert z[0] == 0.0 and z[-1] == 100.0
    psi = m["shape"].values.real
    water = np.trapz(psi ** 2, z, axis=1) / 1.0
    gamma = np.sqrt(k.real ** 2 - (2 * math.pi * freq / 1700.0) ** 2)
    tail = psi[:, -1] ** 2 / (2 * gamma) / 1.8
    np.testing.assert_allclose(water + tail, 1.0, atol=5e-3)  # trapezoid rule on the mesh grid
    # on requested depths
    some = propagation.modes(LOSSLESS, freq, depths_m=[10.0, 50.0, 100.0])
    np.testing.assert_array_equal(some["depth"], [10.0, 50.0, 100.0])
    np.testing.assert_allclose(some["shape"].sel(depth=50.0), m["shape"].sel(depth=50.0), atol=1e-12)
    with pytest.raises(ValueError, match=r"option depths_m: expected depths down to the half-space top"):
        propagation.modes(LOSSLESS, freq, depths_m=[10.0, 150.0])


@pytest.mark.parametrize("engine", ["kraken", "bellhop"])
def test_phase_decreases_with_range(engine):
    # Acoustics Toolbox convention: p ~ exp(-i k r), k between omega / c_bottom and omega / c_water.
    freq, dr = 100.0, 1.0
    a = propagation.pressure(PEKERIS, 30.0, [50.0], 3000.0, [freq], engine=engine).values[0, 0]
    b = propagation.pressure(PEKERIS, 30.0, [50.0], 3000.0 + dr, [freq], engine=engine).values[0, 0]
    step = np.angle(b / a)
    omega = 2 * math.pi * freq
    assert -1.05 * omega / 1500.0 * dr < step < -0.95 * omega / 1700.0 * dr


def test_arrivals_sum_to_the_bellhop_field():
    freq = 200.0
    arr = propagation.arrivals(PEKERIS, 30.0, 50.0, 2000.0, freq)
    assert arr.sizes["arrival"] > 10 and np.all(np.diff(arr["delay"].values) >= 0)
    assert all(_has_attrs(arr[v]) for v in arr.data_vars)
    assert arr["amplitude"].dtype == np.complex128 and arr["surface_bounces"].dtype == np.int64
    # the first arrival is the direct path
    assert arr["delay"].values[0] == pytest.approx(math.hypot(2000.0, 20.0) / 1500.0, rel=1e-4)
    assert arr["surface_bounces"].values[0] == 0 and arr["bottom_bounces"].values[0] == 0
    p = propagation.pressure(PEKERIS, 30.0, [50.0], 2000.0, [freq], engine="bellhop").values[0, 0]
    total = np.sum(arr["amplitude"].values * np.exp(-2j * math.pi * freq * arr["delay"].values))
    assert abs(total - p) < 0.1 * abs(p)


@pytest.mark.parametrize("call, match", [
    (lambda: propagation.pressure("Pekeris", 30.0, [50.0], 1e3, [100.0]), r"env = str: expected a propagation"),
    (lambda: propagation.pressure(PEKERIS, 130.0, [50.0], 1e3, [100.0]), r"Source.depth_m\[0\] = 130.0"),
    (lambda: propagation.pressure(PEKERIS, 30.0, [50.0, -2.0], 1e3, [100.0]), r"Receivers.depths_m\[1\] = -2.0"),
    (lambda: propagation.pressure(PEKERIS, 30.0, [], 1e3, [100.0]), r"Receivers.depths_m = \(\): expected at least"),
    (lambda: propagation.pressure(PEKERIS, 30.0, [50.0], 0.0, [100.0]), r"Receivers.ranges_m = 0.0"),
    (lambda: propagation.pressure(PEKERIS, 30.0, [50.0], [1e3, 2e3], [100.0]), r"Receivers.range_m = .*single"),
    (lambda: propagation.pressure(PEKERIS, 30.0, [50.0], 1e3, [100.0, -5.0]), r"Tones.freqs_hz = -5.0"),
    (lambda: propagation.pressure(PEKERIS, 30.0, [50.0], 1e3, [float("nan")]), r"Tones.freqs_hz = nan"),
    (lambda: propagation.tl_field(PEKERIS, 30.0, [100.0, 200.0], [50.0], [1e3]), r"Tones.freq_hz = .*single"),
    (lambda: propagation.modes(PEKERIS, 0.0), r"Tones.freqs_hz = 0.0"),
    (lambda: propagation.arrivals(PEKERIS, 30.0, 101.0, 1e3, 100.0), r"Receivers.depths_m\[0\] = 101.0"),
    (lambda: HalfSpace(1700.0, 1800.0, 0.1), r"HalfSpace.density_g_cm3 = 1800.0"),
    (lambda: FluidLayer(10.0, 16000.0, 1600.0, 1.5, 0.1), r"FluidLayer.sound_speed_top_mps = 16000.0"),
    (lambda: SoundSpeedProfile((0.0, 50.0), (1500.0, 150.0)), r"SoundSpeedProfile.speed_mps = 150.0"),
    (lambda: PEKERIS.replace(water_depth_m=-1.0), r"Environment.water_depth_m = -1.0"),
])
def test_bad_inputs_raise_errors_naming_the_cause(call, match):
    with pytest.raises(InvalidEnvironmentError, match=match):
        call()


@pytest.mark.bellhop
def test_fortran_bellhop_matches_pelagic_on_fields_and_arrivals(requires_bellhop):
    ranges = np.array([500.0, 1500.0, 3000.0])
    ours = propagation.tl_field(PEKERIS, 30.0, 150.0, DEPTHS, ranges, engine="bellhop")
    ref = propagation.tl_field(PEKERIS, 30.0, 150.0, DEPTHS, ranges, engine="bellhop-fortran")
    assert ref.attrs["engine_version"].startswith("bellhop.exe")
    assert np.max(np.abs(ours.values - ref.values)) < 0.05
    a = propagation.arrivals(PEKERIS, 30.0, 50.0, 2000.0, 200.0, engine="bellhop")
    b = propagation.arrivals(PEKERIS, 30.0, 50.0, 2000.0, 200.0, engine="bellhop-fortran")
    assert a.sizes == b.sizes
    np.testing.assert_allclose(a["delay"], b["delay"], rtol=1e-5)
    amp_a, amp_b = a["amplitude"].values, b["amplitude"].values
    np.testing.assert_allclose(amp_a, amp_b, rtol=1e-3, atol=1e-3 * np.abs(amp_a).max())
    np.testing.assert_array_equal(a["bottom_bounces"], b["bottom_bounces"])


@pytest.mark.parametrize("engine", ["kraken", "bellhop"])
def test_pressure_positions_match_single_positions(engine):
    zs = np.array([30.0, 55.0, 30.0])
    rr = np.array([1500.0, 2500.0, 4000.0])
    freqs = [100.0, 150.0]
    batch = propagation.pressure_positions(LAYERED if engine == "kraken" else PEKERIS, zs, rr, DEPTHS[::-1],
                                           freqs, engine=engine)
    assert batch.dims == ("position", "freq", "receiver")
    assert batch.attrs["units"] == "1" and batch["range"].attrs["units"] == "m"
    np.testing.assert_array_equal(batch["source_depth"].values, zs)
    for k in range(3):
        env = LAYERED if engine == "kraken" else PEKERIS
        one = propagation.pressure(env, zs[k], DEPTHS[::-1], rr[k], freqs, engine=engine).values
        # KRAKEN refines eigenvalues for the largest range of a call: equal to a few 1e-4, not bitwise.
        np.testing.assert_allclose(batch.values[k], one, rtol=5e-3, atol=1e-9)


def test_pressure_positions_refuses_mismatched_positions():
    with pytest.raises(InvalidEnvironmentError, match="one depth and one range per position"):
        propagation.pressure_positions(PEKERIS, [30.0, 40.0], [1000.0], DEPTHS, [100.0])
    with pytest.raises(InvalidEnvironmentError, match=r"Source.depth_m\[0\] = 130.0"):
        propagation.pressure_positions(PEKERIS, [30.0, 130.0], [1000.0, 2000.0], DEPTHS, [100.0])

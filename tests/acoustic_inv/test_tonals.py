"""Tests of acoustic_inv.tonals: synthetic multichannel tones with known complex amplitudes, a
Doppler offset and white noise of known level are recovered across the array."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal.windows import hann

from acoustic_inv.errors import ConfigError, DataError
from acoustic_inv.recordings import Recording
from acoustic_inv.tonals import TonalConfig, TonalEstimate, extract_tonals

FS = 1500.0
N_REC = 21
DURATION_S = 60.0
DEPTHS = tuple(np.linspace(94.125, 212.25, N_REC))
TONES = (49.0, 112.0, 235.0, 388.0)
DOPPLER_HZ = 0.3
SNAPSHOT_S = TonalConfig().snapshot_s


def _bin_snr_scale(snr_db: float) -> float:
    """Tone amplitude (per unit rms of complex amplitudes) giving an in-bin SNR of ``snr_db`` against
    unit-variance white noise: a Hann snapshot of N samples turns a * cos into a bin of power
    a^2 S1^2 / 4 and white noise of variance s^2 into s^2 S2 (S1 = sum w, S2 = sum w^2)."""
    w = hann(int(SNAPSHOT_S * FS), sym=False)
    return float(np.sqrt(10 ** (snr_db / 10) * 4 * (w**2).sum() / w.sum() ** 2))


def _synthesize(amplitudes: np.ndarray, tones_hz: np.ndarray, *, seed: int, on_s: tuple[float, float] | None = None,
                duration_s: float = DURATION_S) -> Recording:
    """Tones ``Re(a_r exp(2 pi i (f + Doppler) t))`` on each receiver plus unit-variance white noise."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * FS)
    t = np.arange(n) / FS
    x = rng.normal(size=(n, amplitudes.shape[1]))
    gate = np.ones(n) if on_s is None else ((t >= on_s[0]) & (t < on_s[1])).astype(float)
    for a, f in zip(amplitudes, tones_hz):
        x += np.real(np.exp(2j * np.pi * (f + DOPPLER_HZ) * t)[:, None] * a[None, :]) * gate[:, None]
    return Recording(x, FS, DEPTHS, tuple(float(f) for f in tones_hz))


def _amplitudes(n_tones: int, snr_db: float, seed: int) -> np.ndarray:
    """Random complex amplitudes (n_tones, N_REC), each row scaled to the array-mean in-bin SNR."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n_tones, N_REC)) + 1j * rng.normal(size=(n_tones, N_REC))
    a /= np.sqrt(np.mean(np.abs(a) ** 2, axis=1, keepdims=True))
    return a * _bin_snr_scale(snr_db)


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|<a, b>| / (|a| |b|) row by row: 1 when the vectors agree up to a complex factor."""
    return np.abs(np.sum(np.conj(a) * b, axis=-1)) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def high_snr() -> tuple[np.ndarray, TonalEstimate]:
    a = _amplitudes(len(TONES), 40.0, seed=10)
    return a, extract_tonals(_synthesize(a, np.array(TONES), seed=11))


@pytest.fixture(scope="module")
def snr20() -> tuple[np.ndarray, TonalEstimate]:
    a = _amplitudes(len(TONES), 20.0, seed=20)
    return a, extract_tonals(_synthesize(a, np.array(TONES), seed=21))


def test_high_snr_recovers_relative_amplitudes_and_phases(high_snr) -> None:
    a, est = high_snr
    assert est.pressure.shape == (len(TONES), N_REC)
    assert np.all(_correlation(a, est.pressure) > 0.9999)
    # Amplitudes are in the units of the samples (peak amplitude), not just proportional.
    np.testing.assert_allclose(np.linalg.norm(est.pressure, axis=1), np.linalg.norm(a, axis=1), rtol=0.01)
    # Element by element, after removing one common phase: errors of a per cent of the rms amplitude.
    phase = np.sum(np.conj(a) * est.pressure, axis=1, keepdims=True)
    aligned = est.pressure * np.exp(-1j * np.angle(phase))
    rms = np.sqrt(np.mean(np.abs(a) ** 2, axis=1, keepdims=True))
    assert np.max(np.abs(aligned - a) / rms) < 0.02


def test_doppler_offset_is_measured(high_snr) -> None:
    _, est = high_snr
    np.testing.assert_array_equal(est.freq_nominal_hz, TONES)
    # Parabolic interpolation on a 0.25 Hz grid: well inside a twentieth of a bin.
    np.testing.assert_allclose(est.freq_measured_hz, np.array(TONES) + DOPPLER_HZ, atol=0.0125)


@pytest.mark.parametrize("case, snr_db", [("high_snr", 40.0), ("snr20", 20.0)])
def test_snr_is_estimated_within_one_db(case: str, snr_db: float, request: pytest.FixtureRequest) -> None:
    _, est = request.getfixturevalue(case)
    np.testing.assert_allclose(est.snr_db, snr_db, atol=1.0)


def test_20_db_snr_still_recovers_the_array_pattern(snr20) -> None:
    a, est = snr20
    assert np.all(_correlation(a, est.pressure) > 0.999)


def test_csd_is_hermitian_rank_one_and_pressure_phase_is_fixed(high_snr) -> None:
    _, est = high_snr
    np.testing.assert_allclose(est.csd, np.conj(np.transpose(est.csd, (0, 2, 1))), atol=1e-12)
    vals = np.linalg.eigvalsh(est.csd)
    assert np.all(vals[:, -2] / vals[:, -1] < 1e-3)
    biggest = np.argmax(np.abs(est.pressure), axis=1)
    lead = est.pressure[np.arange(len(TONES)), biggest]
    np.testing.assert_allclose(lead.imag, 0.0, atol=1e-12)
    assert np.all(lead.real > 0)
    assert est.n_snapshots == int((DURATION_S * FS - SNAPSHOT_S * FS) // (SNAPSHOT_S * FS / 2)) + 1


def test_missing_tone_raises_naming_it() -> None:
    present = np.array([64.0, 130.0])
    a = _amplitudes(2, 30.0, seed=30)
    rec = _synthesize(a, present, seed=31, duration_s=20.0)
    assert extract_tonals(rec).n_freq == 2
    with pytest.raises(DataError, match=r"tones absent in 0-20 s \(SNR below 3 dB\): 97 Hz \(SNR ") as info:
        extract_tonals(rec, [64.0, 97.0, 130.0])
    assert "64 Hz" not in str(info.value) and "130 Hz" not in str(info.value)


def test_time_window_selects_where_the_tone_is_on() -> None:
    a = _amplitudes(1, 30.0, seed=40)
    rec = _synthesize(a, np.array([79.0]), seed=41, duration_s=30.0, on_s=(15.0, 30.0))
    with pytest.raises(DataError, match=r"tones absent in 0-14 s"):
        extract_tonals(rec, start_s=0.0, duration_s=14.0)
    est = extract_tonals(rec, start_s=15.0, duration_s=15.0)
    assert (est.start_time_s, est.duration_s) == (15.0, 15.0)
    assert _correlation(a, est.pressure)[0] > 0.999
    np.testing.assert_allclose(est.snr_db, 30.0, atol=1.0)


def test_tones_three_hz_apart_are_each_recovered() -> None:
    # SWellEx-96's T-49-13 sets put tones 3 Hz apart (49, 52, 55, ...): the noise estimate must not
    # take the neighbouring lines for noise.
    tones = np.array([49.0, 52.0, 55.0, 58.0])
    a = _amplitudes(4, 25.0, seed=50)
    est = extract_tonals(_synthesize(a, tones, seed=51, duration_s=30.0))
    assert np.all(_correlation(a, est.pressure) > 0.999)
    np.testing.assert_allclose(est.snr_db, 25.0, atol=1.0)


def test_to_xarray_has_freq_receiver_and_receiver2(high_snr) -> None:
    _, est = high_snr
    ds = est.to_xarray()
    assert ds["pressure"].dims == ("freq", "receiver")
    assert ds["csd"].dims == ("freq", "receiver", "receiver2")
    np.testing.assert_array_equal(ds["freq"].values, TONES)
    np.testing.assert_allclose(ds["depth"].values, DEPTHS)
    for name in ("pressure", "csd", "freq_measured_hz", "snr_db", "freq", "depth"):
        assert {"units", "long_name"} <= set(ds[name].attrs), name
    assert ds.attrs["n_snapshots"] == est.n_snapshots


def test_bad_tones_and_windows_raise() -> None:
    rec = _synthesize(_amplitudes(1, 30.0, seed=60), np.array([100.0]), seed=61, duration_s=10.0)
    with pytest.raises(DataError, match=r"tone 800 Hz \(\+- 0.5 Hz search\) is not inside \(0, 750\) Hz"):
        extract_tonals(rec, [100.0, 800.0])
    with pytest.raises(DataError, match=r"window of 3 s at 2 s is shorter than one snapshot \(4 s\)"):
        extract_tonals(rec, start_s=2.0, duration_s=3.0)
    with pytest.raises(DataError, match=r"window 5-15 s ends after the recording"):
        extract_tonals(rec, start_s=5.0, duration_s=10.0)
    bare = Recording(rec.pressure, FS)
    with pytest.raises(DataError, match=r"no tones to extract"):
        extract_tonals(bare)


@pytest.mark.parametrize("kwargs, message", [
    ({"snapshot_s": 0.0}, r"TonalConfig.snapshot_s = 0.0: expected a positive length in s"),
    ({"overlap_fraction": 1.0}, r"TonalConfig.overlap_fraction = 1.0: expected a fraction in \[0, 1\)"),
    ({"search_halfwidth_hz": -0.1}, r"TonalConfig.search_halfwidth_hz = -0.1"),
    ({"noise_guard_bins": 1}, r"TonalConfig.noise_guard_bins = 1: expected an integer >= 2"),
    ({"noise_bins": 2.5}, r"TonalConfig.noise_bins = 2.5: expected an integer >= 1"),
    ({"min_snr_db": float("nan")}, r"TonalConfig.min_snr_db = nan"),
])
def test_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TonalConfig(**kwargs)

"""Tonal extraction: the complex pressure of each source tone across a hydrophone array.

A towed source (SWellEx-96's J-15 projected sets of continuous tones) shows up in each channel as
narrow spectral lines, shifted by a few tenths of a hertz by the tow's Doppler. For each nominal tone
this module

1. cuts the time window into Hann-windowed snapshots (configurable length and overlap) and averages
   the FFT power summed over the array; summing over the array means the line is found at the same
   frequency on every channel;
2. takes the strongest bin within ``search_halfwidth_hz`` of the nominal frequency and refines it by
   parabolic interpolation of the log power over the three bins around the peak;
3. evaluates each snapshot's Fourier coefficient at exactly that frequency (no scalloping loss) and
   averages the outer products into a cross-spectral density matrix (CSD);
4. takes as the pressure vector the principal eigenvector of the CSD scaled by the square root of its
   eigenvalue (the rank-one part: for a single tone in white noise, the tone's complex amplitudes);
5. estimates the SNR from the noise in bins a few bins away from the peak (their median, outside the
   Hann main lobe and away from the other requested tones).

Amplitudes are scaled so that a tone ``a * cos(2 pi f t + phi)`` on one channel gives
``pressure = a * exp(i phi)`` up to a phase common to all channels; the common phase is arbitrary,
fixed here so that the largest element is real and positive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import fft as sfft
from scipy import signal, special

from acoustic_inv.errors import ConfigError, DataError
from acoustic_inv.recordings import PRESSURE_UNITS, Recording

__all__ = ["TonalConfig", "TonalEstimate", "extract_tonals"]

_HANN_MAIN_LOBE_BINS = 2  # the Hann main lobe reaches two bins either side of the peak
_MIN_NOISE_BINS = 8
_SNAPSHOT_CHUNK = 16  # snapshots transformed at once: bounds memory on long windows


@dataclass(frozen=True)
class TonalConfig:
    """Settings of :func:`extract_tonals`.

    Args:
        snapshot_s: Snapshot (FFT) length, s; the bin width is ``1 / snapshot_s`` Hz.
        overlap_fraction: Overlap of consecutive snapshots, in [0, 1).
        search_halfwidth_hz: The peak is sought within this many Hz of each nominal tone (Doppler).
        min_snr_db: A tone whose SNR (dB) is below this is absent.
        noise_guard_bins: Bins either side of the peak left out of the noise estimate (at least the
            Hann main lobe, 2).
        noise_bins: Bins either side of the guard used for the noise estimate.

    Raises:
        ConfigError: naming the field, the value and what was expected.
    """

    snapshot_s: float = 4.0
    overlap_fraction: float = 0.5
    search_halfwidth_hz: float = 0.5
    min_snr_db: float = 3.0
    noise_guard_bins: int = 4
    noise_bins: int = 16

    def __post_init__(self) -> None:
        def fail(name: str, expected: str) -> ConfigError:
            return ConfigError(f"TonalConfig.{name} = {getattr(self, name)!r}: expected {expected}")

        if not _finite_real(self.snapshot_s) or self.snapshot_s <= 0:
            raise fail("snapshot_s", "a positive length in s")
        if not _finite_real(self.overlap_fraction) or not 0 <= self.overlap_fraction < 1:
            raise fail("overlap_fraction", "a fraction in [0, 1)")
        if not _finite_real(self.search_halfwidth_hz) or self.search_halfwidth_hz < 0:
            raise fail("search_halfwidth_hz", "a half-width >= 0 Hz")
        if not _finite_real(self.min_snr_db):
            raise fail("min_snr_db", "a finite threshold in dB")
        if not _is_int(self.noise_guard_bins) or self.noise_guard_bins < _HANN_MAIN_LOBE_BINS:
            raise fail("noise_guard_bins", f"an integer >= {_HANN_MAIN_LOBE_BINS} (the Hann main lobe)")
        if not _is_int(self.noise_bins) or self.noise_bins < 1:
            raise fail("noise_bins", "an integer >= 1")


@dataclass(frozen=True, eq=False)
class TonalEstimate:
    """The tones of one time window of a recording.

    Args:
        freq_nominal_hz: Nominal tone frequencies, shape (n_freq,), Hz.
        freq_measured_hz: Measured (Doppler-shifted) frequencies, shape (n_freq,), Hz.
        csd: Cross-spectral density matrices, shape (n_freq, n_receiver, n_receiver), complex,
            (pressure units)^2, ``csd[f] = mean over snapshots of x x^H``.
        pressure: Principal eigenvector of each CSD scaled by the square root of its eigenvalue,
            shape (n_freq, n_receiver), complex, pressure units (peak amplitude); common phase
            arbitrary (largest element real and positive).
        snr_db: Signal-to-noise ratio per tone, shape (n_freq,), dB: tone power over the noise power
            in one snapshot's frequency bin, averaged over the array.
        n_snapshots: Snapshots averaged.
        receiver_depths_m: Receiver depths, shape (n_receiver,), m, or None.
        start_time_s: Start of the window, s from the start of the file.
        duration_s: Length of the window, s.
        snapshot_s: Snapshot length, s.
        source_file: The recording's file.
    """

    freq_nominal_hz: np.ndarray
    freq_measured_hz: np.ndarray
    csd: np.ndarray
    pressure: np.ndarray
    snr_db: np.ndarray
    n_snapshots: int
    receiver_depths_m: tuple[float, ...] | None = None
    start_time_s: float = 0.0
    duration_s: float = 0.0
    snapshot_s: float = 0.0
    source_file: str = ""

    def __post_init__(self) -> None:
        for name in ("freq_nominal_hz", "freq_measured_hz", "csd", "pressure", "snr_db"):
            a = np.array(getattr(self, name), copy=True)
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        n_freq, n_rec = self.pressure.shape
        if self.csd.shape != (n_freq, n_rec, n_rec) or self.freq_nominal_hz.shape != (n_freq,) or \
                self.freq_measured_hz.shape != (n_freq,) or self.snr_db.shape != (n_freq,):
            raise DataError(f"TonalEstimate: inconsistent shapes (pressure {self.pressure.shape}, csd "
                            f"{self.csd.shape}, freq {self.freq_nominal_hz.shape}, snr {self.snr_db.shape})")

    @property
    def n_freq(self) -> int:
        return int(self.pressure.shape[0])

    @property
    def n_receiver(self) -> int:
        return int(self.pressure.shape[1])

    def to_xarray(self) -> Any:
        """The estimate as an ``xarray.Dataset``: ``pressure(freq, receiver)``,
        ``csd(freq, receiver, receiver2)``, ``freq_measured_hz(freq)``, ``snr_db(freq)``; the
        ``freq`` coordinate holds the nominal frequencies, ``depth`` (m) sits on ``receiver``."""
        import xarray as xr

        rec = np.arange(self.n_receiver)
        coords: dict[str, Any] = {
            "freq": ("freq", self.freq_nominal_hz, {"units": "Hz", "long_name": "nominal tone frequency"}),
            "receiver": ("receiver", rec, {"units": "1", "long_name": "receiver index, shallow to deep"}),
            "receiver2": ("receiver2", rec, {"units": "1", "long_name": "receiver index (second CSD axis)"}),
        }
        if self.receiver_depths_m is not None:
            coords["depth"] = ("receiver", np.asarray(self.receiver_depths_m),
                               {"units": "m", "long_name": "receiver depth"})
        data_vars = {
            "pressure": (("freq", "receiver"), self.pressure,
                         {"units": PRESSURE_UNITS, "long_name": "complex tone amplitude (principal CSD eigenvector)"}),
            "csd": (("freq", "receiver", "receiver2"), self.csd,
                    {"units": f"({PRESSURE_UNITS})^2", "long_name": "cross-spectral density matrix"}),
            "freq_measured_hz": ("freq", self.freq_measured_hz,
                                 {"units": "Hz", "long_name": "measured (Doppler-shifted) tone frequency"}),
            "snr_db": ("freq", self.snr_db, {"units": "dB", "long_name": "signal-to-noise ratio per bin"}),
        }
        attrs = {"n_snapshots": self.n_snapshots, "start_time_s": self.start_time_s,
                 "duration_s": self.duration_s, "snapshot_s": self.snapshot_s, "source_file": self.source_file}
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def extract_tonals(recording: Recording, tones_hz: Sequence[float] | None = None, *,
                   start_s: float | None = None, duration_s: float | None = None,
                   config: TonalConfig | None = None) -> TonalEstimate:
    """Measure the source tones in a window of a recording.

    Args:
        recording: The recording (channels shallow to deep).
        tones_hz: Nominal tone frequencies, Hz; default the recording's ``source_tones_hz``.
        start_s: Start of the window, s from the start of the file; None for the recording's start.
        duration_s: Length of the window, s; None for the rest of the recording.
        config: Settings; default :class:`TonalConfig()`.

    Returns:
        The tones' measured frequencies, CSDs, pressure vectors and SNRs.

    Raises:
        DataError: for no tones, a tone outside (0, Nyquist), a window outside the recording or
            shorter than one snapshot, or tones absent (SNR below ``config.min_snr_db``; all such
            tones are named).
    """
    cfg = config if config is not None else TonalConfig()
    where = recording.path or "<recording>"
    tones = recording.source_tones_hz if tones_hz is None else tones_hz
    if tones is None:
        raise DataError(f"{where}: no tones to extract: give tones_hz or a recording with source_tones_hz")
    f0 = np.atleast_1d(np.asarray(tones, dtype=float))
    if f0.ndim != 1 or f0.size == 0:
        raise DataError(f"{where}: tones_hz = {tones!r}; expected a non-empty list of frequencies in Hz")
    fs = recording.sample_rate_hz
    nyquist = fs / 2
    for f in f0:
        if not math.isfinite(f) or f - cfg.search_halfwidth_hz <= 0 or f + cfg.search_halfwidth_hz >= nyquist:
            raise DataError(f"{where}: tone {f:g} Hz (+- {cfg.search_halfwidth_hz:g} Hz search) is not inside "
                            f"(0, {nyquist:g}) Hz, the band of a recording sampled at {fs:g} Hz")

    window = recording.select(start_s, duration_s)
    x = window.pressure
    n_fft = int(round(cfg.snapshot_s * fs))
    if n_fft < 8:
        raise DataError(f"{where}: snapshot_s = {cfg.snapshot_s:g} s is under 8 samples at {fs:g} Hz")
    if x.shape[0] < n_fft:
        raise DataError(f"{where}: window of {window.duration_s:g} s at {window.start_time_s:g} s is shorter than "
                        f"one snapshot ({cfg.snapshot_s:g} s)")
    hop = max(1, int(round(n_fft * (1 - cfg.overlap_fraction))))
    snapshots = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=0)[::hop]  # (K, R, N), a view
    n_snap = snapshots.shape[0]
    taper = signal.windows.hann(n_fft, sym=False)
    df = fs / n_fft

    # Pass 1: array-summed power spectrum, averaged over snapshots.
    power = np.zeros(n_fft // 2 + 1)
    for k in range(0, n_snap, _SNAPSHOT_CHUNK):
        spec = sfft.rfft(snapshots[k:k + _SNAPSHOT_CHUNK] * taper, axis=-1)
        power += np.sum(spec.real**2 + spec.imag**2, axis=(0, 1))
    power /= n_snap

    f_meas = np.array([_peak_frequency(power, f, cfg.search_halfwidth_hz, df) for f in f0])

    # Pass 2: Fourier coefficients at the measured frequencies, scaled to peak amplitude.
    n = np.arange(n_fft)
    kernel = (2.0 / taper.sum()) * taper[None, :] * np.exp(-2j * np.pi * f_meas[:, None] * n[None, :] / fs)
    n_rec = x.shape[1]
    csd = np.zeros((f0.size, n_rec, n_rec), dtype=complex)
    for k in range(0, n_snap, _SNAPSHOT_CHUNK):
        coef = np.tensordot(snapshots[k:k + _SNAPSHOT_CHUNK], kernel, axes=([2], [1]))  # (K, R, F)
        csd += np.einsum("krf,ksf->frs", coef, coef.conj())
    csd /= n_snap

    pressure = np.empty((f0.size, n_rec), dtype=complex)
    for j in range(f0.size):
        vals, vecs = np.linalg.eigh(csd[j])
        v = vecs[:, -1] * math.sqrt(max(vals[-1], 0.0))
        big = int(np.argmax(np.abs(v)))
        pressure[j] = v * np.exp(-1j * np.angle(v[big]))

    # SNR: the CSD's trace is signal plus noise power summed over the array; the noise per bin comes
    # from the FFT power nearby, rescaled to the same (peak-amplitude) units.
    noise = _noise_power(power, f0, f_meas, cfg, df, n_snap * n_rec) * 4.0 / taper.sum() ** 2
    total = np.real(np.trace(csd, axis1=1, axis2=2))
    with np.errstate(divide="ignore"):
        snr_db = 10.0 * np.log10(np.maximum(total - noise, 0.0) / noise)

    absent = [f"{f:g} Hz (SNR {s:.1f} dB)" for f, s in zip(f0, snr_db) if not s >= cfg.min_snr_db]
    if absent:
        t0, t1 = window.start_time_s, window.start_time_s + window.duration_s
        raise DataError(f"{where}: tones absent in {t0:g}-{t1:g} s (SNR below {cfg.min_snr_db:g} dB): "
                        f"{', '.join(absent)}")
    return TonalEstimate(f0, f_meas, csd, pressure, snr_db, n_snap, recording.receiver_depths_m,
                         window.start_time_s, window.duration_s, n_fft / fs, recording.path)


def _peak_frequency(power: np.ndarray, f0: float, halfwidth_hz: float, df: float) -> float:
    """Frequency (Hz) of the strongest bin within ``halfwidth_hz`` of ``f0``, refined by a parabola
    through the log power of it and its two neighbours."""
    lo = max(1, math.ceil((f0 - halfwidth_hz) / df))
    hi = min(power.size - 2, math.floor((f0 + halfwidth_hz) / df))
    if hi < lo:  # a search narrower than a bin: the nearest bin
        lo = hi = min(max(1, int(round(f0 / df))), power.size - 2)
    k = lo + int(np.argmax(power[lo:hi + 1]))
    a, b, c = np.log(np.maximum(power[k - 1:k + 2], np.finfo(float).tiny))
    curvature = a - 2 * b + c
    delta = 0.5 * (a - c) / curvature if curvature < 0 else 0.0
    return (k + float(np.clip(delta, -0.5, 0.5))) * df


def _noise_power(power: np.ndarray, f0: np.ndarray, f_meas: np.ndarray, cfg: TonalConfig, df: float,
                 n_terms: int) -> np.ndarray:
    """Noise power per bin near each tone (same units as ``power``): the median over bins
    ``noise_guard_bins`` to ``noise_guard_bins + noise_bins`` away from the peak, skipping bins
    near the other tones, converted from median to mean."""
    n_bins = power.size
    bins = np.arange(n_bins)
    lobe = _HANN_MAIN_LOBE_BINS + 1
    search = cfg.search_halfwidth_hz / df
    out = np.empty(f0.size)
    for j, fm in enumerate(f_meas):
        peak = fm / df
        others = np.zeros(n_bins, dtype=bool)
        for i, f in enumerate(f0):
            if i != j:
                others |= np.abs(bins - f / df) <= search + lobe
        dist = np.abs(bins - peak)
        outer = cfg.noise_guard_bins + cfg.noise_bins
        while True:
            use = (dist > cfg.noise_guard_bins) & (dist <= outer) & ~others & (bins > 0) & (bins < n_bins - 1)
            # Tones crowded together or near a band edge: reach further out for enough noise bins.
            if use.sum() >= _MIN_NOISE_BINS or outer >= n_bins:
                break
            outer += cfg.noise_bins
        if not use.any():
            raise DataError(f"no noise bins left near the tone at {f0[j]:g} Hz; use longer snapshots")
        out[j] = np.median(power[use])
    # Each bin's power is a sum of about n_terms squared-Gaussian pairs (gamma with shape n_terms);
    # its median sits below its mean by the ratio below (-1.6 dB for one term, ~0 for many).
    median_over_mean = special.gammaincinv(n_terms, 0.5) / n_terms
    return out / median_over_mean


def _finite_real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

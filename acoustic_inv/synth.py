"""Synthetic recordings at a known truth: the propagation engine's tones, as a hydrophone array hears them.

For parameters ``theta`` the engine gives one complex pressure ``p[f, r]`` per tone and element, in
the Acoustics Toolbox convention: the field is ``Re{p exp(+i 2 pi f t)}``. Each tone gets a source
factor ``a_f = level_f exp(i phase_f)`` (the source level and phase are unknown in practice and
differ between tones), so element ``r`` records

    s_r(t) = sum_f |a_f p[f, r]| cos(2 pi f t + arg p[f, r] + phase_f) + sigma n_r(t),

with ``n_r`` independent standard normal (white) noise. :func:`acoustic_inv.tonals.extract_tonals`
measures ``a_f p[f, :]`` back (up to one common phase per tone), so the source-invariant features of
the recording equal those of the engine's pressure: the sign-convention link between simulation and
recordings (an ``exp(-i omega t)`` engine would come back conjugated).

SNR: with white noise of standard deviation ``sigma`` (per sample) and Hann-windowed snapshots of
``N`` samples scaled to peak amplitude (as :mod:`acoustic_inv.tonals` does), the noise power in one
frequency bin is ``6 sigma^2 / N``, since ``(sum w)^2 = N^2 / 4`` and ``sum w^2 = 3 N / 8``. For a
requested per-tone SNR the tone's level is set so that ``mean_r |a_f p[f, r]|^2 / (6 sigma^2 / N)``
equals it: the per-snapshot SNR that ``extract_tonals`` reports, and the quantity the training
noise model draws (signal power averaged over the array over noise power per element).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from acoustic_inv.errors import ConfigError
from acoustic_inv.recordings import Recording, read_sidecar, sidecar_path, write_wav

if TYPE_CHECKING:
    from acoustic_inv.scenario import Scenario

__all__ = ["SyntheticRecording", "resolve_theta", "synthesize", "write_synthetic"]

# Rows of the time series computed at once: bounds the memory of long recordings.
_BLOCK = 65536


@dataclass(frozen=True, eq=False)
class SyntheticRecording:
    """A synthetic recording and its truth.

    Attributes:
        recording: The recording (channels shallow to deep, depths and tones set).
        scenario_name: The scenario simulated.
        param_names: Parameter names, shape (d,).
        theta: The true parameters, shape (d,), in their units.
        pressure: The engine's noise-free pressure, shape (n_freq, n_receiver), complex, re a unit
            source at 1 m (Acoustics Toolbox convention).
        source_factor: Per-tone complex source factor ``a_f``, shape (n_freq,).
        snr_db: Requested per-snapshot SNR per tone, shape (n_freq,), dB (``inf`` without noise).
        noise_std: Standard deviation of the white noise per sample, same units as the recording.
        snapshot_s: Snapshot length the SNR refers to, s.
        seed: Seed of the noise and the random phases.
    """

    recording: Recording
    scenario_name: str
    param_names: tuple[str, ...]
    theta: np.ndarray
    pressure: np.ndarray
    source_factor: np.ndarray
    snr_db: np.ndarray
    noise_std: float
    snapshot_s: float
    seed: int

    def truth(self) -> dict[str, float]:
        """The true parameters by name."""
        return {name: float(value) for name, value in zip(self.param_names, self.theta)}


def resolve_theta(scenario: "Scenario", theta: Mapping[str, float] | Sequence[float] | np.ndarray) -> np.ndarray:
    """Parameters as a vector in the prior's order.

    Args:
        scenario: The scenario.
        theta: Values by name (names not given take the scenario's nominal values), or a vector of
            shape (d,) in the prior's order, in the parameters' units.

    Raises:
        ConfigError: for an unknown name or a vector of the wrong length.
    """
    names = scenario.param_names
    if isinstance(theta, Mapping):
        unknown = sorted(set(theta) - set(names))
        if unknown:
            raise ConfigError(f"theta: unknown parameter {unknown[0]!r}; scenario {scenario.name!r} has {list(names)}")
        values = scenario.nominal_theta().astype(float)
        for name, value in theta.items():
            values[names.index(name)] = float(value)
        return values
    values = np.asarray(theta, dtype=float)
    if values.shape != (len(names),):
        raise ConfigError(f"theta of shape {values.shape}: scenario {scenario.name!r} has {len(names)} parameters "
                          f"{list(names)}")
    return values


def _per_tone(value: float | Sequence[float], n_freq: int, name: str) -> np.ndarray:
    values = np.asarray(value, dtype=float)
    if values.ndim == 0:
        values = np.full(n_freq, float(values))
    if values.shape != (n_freq,):
        raise ConfigError(f"{name} = {value!r}: expected one number or one per tone ({n_freq})")
    return values


def synthesize(scenario: "Scenario", theta: Mapping[str, float] | Sequence[float] | np.ndarray, *,
               duration_s: float, sample_rate_hz: float, snr_db: float | Sequence[float] | None = 20.0,
               source_level: float | Sequence[float] | None = None,
               source_phase_rad: float | Sequence[float] | None = None, noise_std: float = 1.0,
               snapshot_s: float = 4.0, seed: int = 0,
               runner: Callable[..., Any] | None = None) -> SyntheticRecording:
    """Synthesizes a recording of the scenario's tones at the parameters ``theta``.

    Args:
        scenario: The scenario (environment, array, tones, engine).
        theta: True parameters, by name or as a vector in the prior's order (see :func:`resolve_theta`).
        duration_s: Length of the recording, s.
        sample_rate_hz: Sampling rate, Hz (above twice the highest tone).
        snr_db: Per-snapshot SNR of each tone, dB (one number or one per tone); None for no noise.
        source_level: Per-tone source level (one number or one per tone, > 0), multiplying the unit
            source; only without noise (with noise, each level follows from ``snr_db`` and ``noise_std``).
            Default 1.
        source_phase_rad: Per-tone source phase, rad; default uniform at random (from ``seed``).
        noise_std: Standard deviation of the white noise per sample, recording units (> 0).
        snapshot_s: Snapshot length the SNR refers to (that of the tonal extraction), s.
        seed: Seed of the noise and the random phases.
        runner: Forward model replacing :func:`propagation.pressure` (tests only).

    Returns:
        The :class:`SyntheticRecording`.

    Raises:
        ConfigError: for bad arguments. propagation.errors.PropagationError: when the engine fails.
    """
    from acoustic_inv.simulation import Simulator

    values = resolve_theta(scenario, theta)
    freqs = np.asarray(scenario.freqs_hz, dtype=float)
    n_freq = len(freqs)
    fs = float(sample_rate_hz)
    if not math.isfinite(fs) or fs <= 2.0 * freqs.max():
        raise ConfigError(f"sample_rate_hz = {sample_rate_hz!r}: expected more than twice the highest tone "
                          f"({2 * freqs.max():g} Hz)")
    if not math.isfinite(duration_s) or duration_s * fs < 1:
        raise ConfigError(f"duration_s = {duration_s!r}: expected a positive length of at least one sample")
    if not math.isfinite(noise_std) or noise_std <= 0:
        raise ConfigError(f"noise_std = {noise_std!r}: expected a positive standard deviation")
    if not math.isfinite(snapshot_s) or snapshot_s <= 0:
        raise ConfigError(f"snapshot_s = {snapshot_s!r}: expected a positive length in s")
    if snr_db is not None and source_level is not None:
        raise ConfigError("give snr_db or source_level, not both: with noise, the SNR sets each tone's level")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7]))
    phase = (rng.uniform(0.0, 2.0 * np.pi, n_freq) if source_phase_rad is None
             else _per_tone(source_phase_rad, n_freq, "source_phase_rad"))

    pressure = Simulator(scenario, runner=runner).run_engine(values)
    mean_power = np.mean(np.abs(pressure) ** 2, axis=1)
    if snr_db is None:
        snr = np.full(n_freq, np.inf)
        level = _per_tone(1.0 if source_level is None else source_level, n_freq, "source_level")
        if np.any(~np.isfinite(level)) or np.any(level <= 0):
            raise ConfigError(f"source_level = {source_level!r}: expected positive levels")
    else:
        snr = _per_tone(snr_db, n_freq, "snr_db")
        if not np.all(np.isfinite(snr)):
            raise ConfigError(f"snr_db = {snr_db!r}: expected finite values in dB")
        n_fft = int(round(snapshot_s * fs))
        noise_bin_power = 6.0 * noise_std**2 / n_fft
        level = np.sqrt(10.0 ** (snr / 10.0) * noise_bin_power / mean_power)
    factor = level * np.exp(1j * phase)
    amplitude = factor[:, None] * pressure  # (F, R)

    n_time = int(round(duration_s * fs))
    n_rec = pressure.shape[1]
    data = np.empty((n_time, n_rec))
    magnitude, angle = np.abs(amplitude), np.angle(amplitude)
    for start in range(0, n_time, _BLOCK):
        t = np.arange(start, min(start + _BLOCK, n_time)) / fs
        block = np.zeros((len(t), n_rec))
        for f in range(n_freq):
            block += magnitude[f] * np.cos(2.0 * np.pi * freqs[f] * t[:, None] + angle[f])
        data[start:start + len(t)] = block
    if snr_db is not None:
        data += noise_std * rng.standard_normal(data.shape)
    recording = Recording(data, fs, scenario.array.receiver_depths_m, tuple(freqs), "", 0.0)
    return SyntheticRecording(recording, scenario.name, tuple(scenario.param_names), values, pressure, factor,
                              snr, float(noise_std), float(snapshot_s), int(seed))


def write_synthetic(path: str | os.PathLike[str], synthetic: SyntheticRecording, dtype: str = "float32") -> Path:
    """Writes a synthetic recording as WAV with its JSON sidecar (atomically).

    The sidecar holds the sample rate, depths, channel order and tones, and in ``comment`` the truth
    (scenario, parameters, per-tone SNR, seed) as JSON text.

    Args:
        path: The ``.wav`` file; the sidecar goes beside it (``.json``).
        synthetic: The synthetic recording.
        dtype: WAV sample type (see :func:`acoustic_inv.recordings.write_wav`).

    Returns:
        The WAV path.
    """
    from acoustic_inv.fileio import atomic_write_text

    out = write_wav(path, synthetic.recording, sidecar=True, dtype=dtype)
    side = sidecar_path(out)
    table = read_sidecar(side)
    truth = {"synthetic": True, "scenario": synthetic.scenario_name, "theta": synthetic.truth(),
             "snr_db": [None if not math.isfinite(v) else float(v) for v in synthetic.snr_db],
             "snapshot_s": synthetic.snapshot_s, "noise_std": synthetic.noise_std, "seed": synthetic.seed}
    table["comment"] = json.dumps(truth)
    table = {key: list(value) if isinstance(value, tuple) else value for key, value in table.items()}
    atomic_write_text(side, json.dumps(table, indent=2) + "\n")
    return out

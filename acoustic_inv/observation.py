"""The observation model: complex array pressure at each tone -> the network's input features ``x``.

The same code serves simulated pressure (one noisy snapshot per sample) and tonal amplitudes
extracted from a recording (several snapshots per tone). In practice the source level and the source
phase are unknown, and they differ between tones, so the features must be invariant to multiplying
each tone's pressure vector by an arbitrary complex scalar. Two invariant feature kinds are offered,
and a third for synthetic studies only:

``unit_pressure`` (default)
    Per tone, the pressure vector ``p`` (one value per element) scaled to unit Euclidean norm and
    rotated so that the reference element's value is real and non-negative:
    ``u = p * conj(p_ref) / (|p_ref| * ||p||)``. The features are the real parts of ``u`` for every
    element followed by its imaginary parts for every element but the reference (always 0), so
    ``2 * n_receiver - 1`` numbers per tone. With several snapshots, ``p`` is the principal
    eigenvector of the cross-spectral density matrix (CSDM) ``R = mean_k p_k p_k^H``; for one snapshot
    the eigenvector is ``p`` itself, so simulated and recorded data go through the same map. This is
    the matched-field "replica" of the tone, which carries everything the CSDM says up to its scale
    when the field is coherent.

``csdm``
    Per tone, the CSDM normalised to unit trace, ``R / trace(R)``: its diagonal (real), then the real
    and imaginary parts of its strict upper triangle: ``n_receiver ** 2`` numbers per tone. It needs
    no reference element (no phase wrap when the reference element sits in a null) and keeps
    incoherent (multi-rank) structure of recorded data, at the cost of many more features.

``pressure`` (not invariant: synthetic studies only)
    Per tone, the real then the imaginary parts of the pressure itself, ``2 * n_receiver`` numbers
    per tone. It assumes a known, calibrated source (level and phase), as synthetic benchmarks such as
    the VINA paper's do; it cannot be used with recordings of an uncalibrated source.

Noise model (:func:`add_noise`): for each sample an SNR (dB) is drawn from the scenario's distribution
and complex circular Gaussian noise is added to every element and tone, with variance equal to the
tone's mean signal power across the array divided by the SNR. The noise therefore scales with the
tone's pressure, and the noisy features are invariant too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from acoustic_inv.errors import DataError

if TYPE_CHECKING:
    from acoustic_inv.scenario import Scenario

FEATURE_KINDS: tuple[str, ...] = ("unit_pressure", "csdm", "pressure")

# A vector whose norm is below this (in the pressure's units) has no direction; its features are 0.
_TINY = 1e-300


def noise_variance(pressure: np.ndarray, snr_db: np.ndarray | float) -> np.ndarray:
    """Per-tone complex noise variance for a given SNR.

    Args:
        pressure: Noise-free pressure, shape (..., n_freq, n_receiver), complex, any units.
        snr_db: SNR in dB, shape broadcastable to (...,): signal power (mean over the array, per tone)
            over noise power per element.

    Returns:
        Variance E|n|^2 of the complex noise, shape (..., n_freq), in the pressure's units squared.
    """
    pressure = np.asarray(pressure)
    signal_power = np.mean(np.abs(pressure) ** 2, axis=-1)
    snr = 10.0 ** (np.asarray(snr_db, dtype=float) / 10.0)
    return signal_power / np.expand_dims(snr, -1)


def add_noise(pressure: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Adds complex circular Gaussian noise at the given SNR, independently per element and tone.

    Args:
        pressure: Noise-free pressure, shape (n_freq, n_receiver), complex.
        snr_db: SNR in dB, relative to the mean signal power across the array for each tone.
        rng: Random stream; consumes ``2 * n_freq * n_receiver`` standard normals (real, then imag).

    Returns:
        Noisy pressure, same shape and units.
    """
    pressure = np.asarray(pressure, dtype=complex)
    std = np.sqrt(noise_variance(pressure, snr_db) / 2.0)[..., None]
    real = rng.standard_normal(pressure.shape)
    imag = rng.standard_normal(pressure.shape)
    return pressure + std * (real + 1j * imag)


def principal_vectors(snapshots: np.ndarray) -> np.ndarray:
    """Principal eigenvector of each tone's cross-spectral density matrix.

    Args:
        snapshots: Complex tonal amplitudes, shape (n_snapshot, n_freq, n_receiver).

    Returns:
        Shape (n_freq, n_receiver), complex: the eigenvector of the largest eigenvalue of
        ``R = mean_k p_k p_k^H`` scaled by the square root of that eigenvalue (arbitrary phase).
    """
    snapshots = np.asarray(snapshots, dtype=complex)
    if snapshots.ndim != 3:
        raise DataError(f"snapshots: expected shape (n_snapshot, n_freq, n_receiver), got {snapshots.shape}")
    csdm = np.einsum("kfi,kfj->fij", snapshots, snapshots.conj()) / snapshots.shape[0]
    values, vectors = np.linalg.eigh(csdm)
    return vectors[..., :, -1] * np.sqrt(np.maximum(values[..., -1], 0.0))[..., None]


@dataclass(frozen=True)
class ObservationModel:
    """Maps complex array pressure to features; see the module docstring for the kinds.

    Attributes:
        freqs_hz: Tones, shape (n_freq,), Hz.
        receiver_depths_m: Element depths, shape (n_receiver,), m.
        features: ``unit_pressure`` (default), ``csdm`` or ``pressure`` (not invariant).
        reference_receiver: Index of the phase-reference element (``unit_pressure``).
    """

    freqs_hz: tuple[float, ...]
    receiver_depths_m: tuple[float, ...]
    features: str = "unit_pressure"
    reference_receiver: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "freqs_hz", tuple(float(f) for f in self.freqs_hz))
        object.__setattr__(self, "receiver_depths_m", tuple(float(z) for z in self.receiver_depths_m))
        if self.features not in FEATURE_KINDS:
            raise DataError(f"ObservationModel.features = {self.features!r}: expected one of "
                            f"{list(FEATURE_KINDS)}")
        if not 0 <= self.reference_receiver < self.n_receiver:
            raise DataError(f"ObservationModel.reference_receiver = {self.reference_receiver}: expected "
                            f"an index in 0..{self.n_receiver - 1}")

    @classmethod
    def from_scenario(cls, scenario: "Scenario") -> "ObservationModel":
        """The observation model of a :class:`acoustic_inv.scenario.Scenario`."""
        return cls(freqs_hz=scenario.freqs_hz, receiver_depths_m=scenario.array.receiver_depths_m,
                   features=scenario.observation.features,
                   reference_receiver=scenario.observation.reference_receiver)

    @property
    def n_freq(self) -> int:
        """Number of tones."""
        return len(self.freqs_hz)

    @property
    def n_receiver(self) -> int:
        """Number of elements."""
        return len(self.receiver_depths_m)

    @property
    def features_per_tone(self) -> int:
        """Features contributed by each tone."""
        n = self.n_receiver
        return {"unit_pressure": 2 * n - 1, "csdm": n * n, "pressure": 2 * n}[self.features]

    @property
    def n_features(self) -> int:
        """Length of the feature vector ``x``."""
        return self.n_freq * self.features_per_tone

    def feature_names(self) -> list[str]:
        """One short name per feature, e.g. ``re[49Hz,r3]`` or ``R_im[112Hz,r0,r5]``."""
        names = []
        n = self.n_receiver
        for f in self.freqs_hz:
            tone = f"{f:g}Hz"
            if self.features == "unit_pressure":
                names += [f"re[{tone},r{i}]" for i in range(n)]
                names += [f"im[{tone},r{i}]" for i in range(n) if i != self.reference_receiver]
            elif self.features == "pressure":
                names += [f"re[{tone},r{i}]" for i in range(n)]
                names += [f"im[{tone},r{i}]" for i in range(n)]
            else:
                names += [f"R_diag[{tone},r{i}]" for i in range(n)]
                upper = [(i, j) for i in range(n) for j in range(i + 1, n)]
                names += [f"R_re[{tone},r{i},r{j}]" for i, j in upper]
                names += [f"R_im[{tone},r{i},r{j}]" for i, j in upper]
        return names

    def _check(self, pressure: np.ndarray, what: str) -> np.ndarray:
        pressure = np.asarray(pressure)
        if pressure.shape[-2:] != (self.n_freq, self.n_receiver):
            raise DataError(f"{what}: expected trailing shape (n_freq, n_receiver) = "
                            f"({self.n_freq}, {self.n_receiver}), got {pressure.shape}")
        return pressure.astype(complex, copy=False)

    def features_from_pressure(self, pressure: np.ndarray) -> np.ndarray:
        """Features of single-snapshot pressure (simulated, or one snapshot of a recording).

        Args:
            pressure: Complex pressure, shape (..., n_freq, n_receiver), any units.

        Returns:
            Features, shape (..., n_features), float64; for ``unit_pressure`` and ``csdm``
            dimensionless and invariant to multiplying each tone by a nonzero complex scalar.
        """
        pressure = self._check(pressure, "pressure")
        if self.features == "unit_pressure":
            return self._unit_pressure(pressure)
        if self.features == "pressure":
            parts = np.concatenate([pressure.real, pressure.imag], axis=-1)
            return parts.reshape(*parts.shape[:-2], self.n_features)
        outer = pressure[..., :, None] * pressure[..., None, :].conj()
        return self._csdm(outer)

    def features_from_snapshots(self, snapshots: np.ndarray) -> np.ndarray:
        """Features of several snapshots of tonal amplitudes (e.g. FFT bins of a recording).

        Args:
            snapshots: Complex amplitudes, shape (n_snapshot, n_freq, n_receiver).

        Returns:
            Features, shape (n_features,), float64. For one snapshot this equals
            :meth:`features_from_pressure` of it. (``pressure`` features average the snapshots
            coherently, which only makes sense for a phase-locked calibrated source.)
        """
        snapshots = self._check(snapshots, "snapshots")
        if snapshots.ndim != 3:
            raise DataError(f"snapshots: expected shape (n_snapshot, n_freq, n_receiver), got {snapshots.shape}")
        if self.features == "unit_pressure":
            return self._unit_pressure(principal_vectors(snapshots))
        if self.features == "pressure":
            return self.features_from_pressure(snapshots.mean(axis=0))
        csdm = np.einsum("kfi,kfj->fij", snapshots, snapshots.conj()) / snapshots.shape[0]
        return self._csdm(csdm)

    def _unit_pressure(self, pressure: np.ndarray) -> np.ndarray:
        ref = pressure[..., self.reference_receiver]
        ref_abs = np.abs(ref)
        # A reference element exactly at zero has no phase: leave the vector unrotated.
        rotation = np.where(ref_abs > _TINY, ref.conj() / np.maximum(ref_abs, _TINY), 1.0)
        norm = np.linalg.norm(pressure, axis=-1)
        scale = np.where(norm > _TINY, 1.0 / np.maximum(norm, _TINY), 0.0)
        unit = pressure * (rotation * scale)[..., None]
        keep = [i for i in range(self.n_receiver) if i != self.reference_receiver]
        parts = np.concatenate([unit.real, unit.imag[..., keep]], axis=-1)
        return parts.reshape(*parts.shape[:-2], self.n_features)

    def _csdm(self, csdm: np.ndarray) -> np.ndarray:
        n = self.n_receiver
        trace = np.real(np.trace(csdm, axis1=-2, axis2=-1))
        scale = np.where(trace > _TINY, 1.0 / np.maximum(trace, _TINY), 0.0)
        normalized = csdm * scale[..., None, None]
        rows, cols = np.triu_indices(n, k=1)
        diagonal = np.real(np.diagonal(normalized, axis1=-2, axis2=-1))
        upper = normalized[..., rows, cols]
        parts = np.concatenate([diagonal, upper.real, upper.imag], axis=-1)
        return parts.reshape(*parts.shape[:-2], self.n_features)

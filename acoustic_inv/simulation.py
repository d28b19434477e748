"""Simulating samples: draw parameters, run the propagation engine, add noise, compute features.

Reproducibility: every sample's random numbers come from its own stream,
``numpy.random.SeedSequence([seed, 0, index])``, so a sample's values depend only on the seed and its
index, never on chunking, the number of workers or the order in which samples are computed. Within a
sample the stream is consumed in a fixed order: one uniform per prior parameter (inverse-CDF sampling,
see :mod:`acoustic_inv.priors`), one uniform for the SNR, then the noise.

Environment reuse (optional, ``[simulation] environment_reuse = G``, default 1): normal modes depend on
the environment only, so samples ``g*G .. g*G+G-1`` may share one draw of the environment parameters
(from the stream ``SeedSequence([seed, 1, g])``) while each draws its own source position. The marginal
distribution of each sample is unchanged, but samples of one group are not independent: splits keep
groups together (:func:`acoustic_inv.datasets.split_dataset`). The speed-up needs an engine call that
evaluates several source positions from one mode set: :func:`propagation.pressure_positions` (KRAKEN
solves the modes once per group, about G times faster for G positions).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from acoustic_inv.errors import ConfigError
from acoustic_inv.observation import ObservationModel, add_noise
from acoustic_inv.scenario import PARAMETERS, Scenario
from propagation.errors import (
    EngineNotFoundError,
    PropagationError,
    UnsupportedEnvironmentError,
)

STREAM_SAMPLE = 0
STREAM_ENVIRONMENT = 1

#: A forward model with the signature of :func:`propagation.pressure`.
Runner = Callable[..., Any]

# Failures that say the scenario itself cannot run (every sample would fail): fatal, not recorded.
_CONFIG_ERRORS = (EngineNotFoundError, UnsupportedEnvironmentError)


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of sample ``index`` of a dataset made with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), STREAM_SAMPLE, int(index)]))


def environment_rng(seed: int, group: int) -> np.random.Generator:
    """The random stream of environment group ``group`` (environment reuse)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), STREAM_ENVIRONMENT, int(group)]))


def simulator_noise(seed: int, indices: Sequence[int], n_params: int, n_freq: int, n_receiver: int) -> np.ndarray:
    """The random variables behind each sample's noisy features, regenerated from the dataset seed.

    Sample ``i``'s stream (:func:`sample_rng`) gives, in order, one uniform per prior parameter, one
    uniform for the SNR, then the standard normals of the noise: real parts, then imaginary parts,
    each of shape (n_freq, n_receiver) (:func:`acoustic_inv.observation.add_noise`). Returned per
    sample: the SNR uniform as a standard normal score, then those normals, so the stored features are
    a deterministic function of the noise-free pressure, ``theta`` and this vector. The padded INN
    carries it on its parameter side (``noise_mode = "theta_pad"``).

    Args:
        seed: The dataset seed.
        indices: Sample indices, shape (n,).
        n_params: Number of prior parameters.
        n_freq: Number of tones.
        n_receiver: Number of receivers.

    Returns:
        Shape (n, 1 + 2 * n_freq * n_receiver), dimensionless.
    """
    from scipy import special

    shape = (int(n_freq), int(n_receiver))
    out = np.empty((len(indices), 1 + 2 * shape[0] * shape[1]))
    for row, index in enumerate(indices):
        rng = sample_rng(seed, int(index))
        rng.random(int(n_params))
        u_snr = rng.random()
        real = rng.standard_normal(shape)
        imag = rng.standard_normal(shape)
        out[row, 0] = special.ndtri(u_snr)
        out[row, 1:] = np.concatenate([real.ravel(), imag.ravel()])
    return out


def default_runner() -> Runner:
    """The real forward model, :func:`propagation.pressure`."""
    import propagation

    try:
        return propagation.pressure
    except AttributeError:
        raise ConfigError("propagation.pressure is not available in this installation") from None


@dataclass
class ChunkResult:
    """The outcome of simulating a run of consecutive samples.

    Attributes:
        indices: Sample indices, shape (n,), int64.
        theta: Parameters, shape (n, d), float64, in each parameter's units.
        snr_db: Drawn SNR, shape (n,), dB (``inf`` when the scenario has no noise).
        pressure: Noise-free complex pressure, shape (n, n_freq, n_receiver), complex128, in the
            engine's units (pressure re the field of a unit source at 1 m); NaN for failed samples.
        x: Features, shape (n, n_features), float32; NaN for failed samples.
        errors: One string per sample: empty on success, else the engine's error text.
        engine_seconds: Wall time spent inside the engine, s.
    """

    indices: np.ndarray
    theta: np.ndarray
    snr_db: np.ndarray
    pressure: np.ndarray
    x: np.ndarray
    errors: list[str]
    engine_seconds: float = 0.0

    @property
    def ok(self) -> np.ndarray:
        """Shape (n,), bool: True where the sample succeeded."""
        return np.array([not e for e in self.errors], dtype=bool)

    @property
    def n_failed(self) -> int:
        """Number of failed samples."""
        return int(sum(1 for e in self.errors if e))


@dataclass
class Simulator:
    """Simulates samples of a scenario.

    Attributes:
        scenario: The scenario.
        runner: Forward model with the signature of :func:`propagation.pressure`; None means the real
            engine. Tests inject cheap fakes here; users always get the real engine.
    """

    scenario: Scenario
    runner: Runner | None = None
    observation: ObservationModel = field(init=False)

    def __post_init__(self) -> None:
        self.observation = ObservationModel.from_scenario(self.scenario)
        # The batched engine call serves environment reuse; only the real engine has one.
        self._positions_runner = None
        if self.runner is None:
            self.runner = default_runner()
            import propagation

            self._positions_runner = propagation.pressure_positions
        prior = self.scenario.prior
        self._geometry_mask = np.array([PARAMETERS[n].geometry for n in prior.names], dtype=bool)

    @property
    def n_features(self) -> int:
        """Length of the feature vector."""
        return self.observation.n_features

    def draw(self, seed: int, index: int) -> tuple[np.ndarray, float, np.random.Generator]:
        """Draws sample ``index``'s parameters and SNR.

        Returns:
            theta: shape (d,), in each parameter's units.
            snr_db: the SNR, dB (``inf`` without noise).
            rng: the sample's stream, positioned for the noise draws.
        """
        rng = sample_rng(seed, index)
        prior = self.scenario.prior
        u = rng.random(len(prior))
        reuse = self.scenario.simulation.environment_reuse
        if reuse > 1:
            u_env = environment_rng(seed, index // reuse).random(len(prior))
            u = np.where(self._geometry_mask, u, u_env)
        theta = prior.ppf(u)
        u_snr = rng.random()
        snr = self.scenario.noise.snr_db
        snr_db = float(snr.ppf(u_snr)) if snr is not None else float("inf")
        return theta, snr_db, rng

    def run_engine(self, theta: np.ndarray) -> np.ndarray:
        """Noise-free pressure for one parameter vector.

        Args:
            theta: shape (d,), in each parameter's units.

        Returns:
            Complex pressure, shape (n_freq, n_receiver).

        Raises:
            PropagationError: when the engine fails.
        """
        geometry = self.scenario.geometry(theta)
        engine = self.scenario.engine
        result = self.runner(geometry.environment, geometry.source_depth_m,
                             self.scenario.array.receiver_depths_m, geometry.source_range_m,
                             self.scenario.freqs_hz, engine=engine.name, **engine.options_dict)
        if hasattr(result, "transpose") and hasattr(result, "dims"):
            result = result.transpose("freq", "receiver").values
        pressure = np.asarray(result, dtype=complex)
        expected = (len(self.scenario.freqs_hz), len(self.scenario.array.receiver_depths_m))
        if pressure.shape != expected:
            raise PropagationError(f"engine returned pressure of shape {pressure.shape}, expected {expected}")
        if not np.all(np.isfinite(pressure)):
            raise PropagationError("engine returned non-finite pressure")
        return pressure

    def _run_group(self, thetas: list[np.ndarray]) -> list[np.ndarray | PropagationError]:
        """Noise-free pressure for parameter vectors that share one environment (or one vector).

        With the real engine and several vectors, one :func:`propagation.pressure_positions` call
        serves them all (modes computed once); an injected runner is called once per vector.
        Engine failures are returned in place of the pressure (the whole group fails together when it
        shares one engine call).
        """
        if len(thetas) > 1 and self._positions_runner is not None:
            geometries = [self.scenario.geometry(t) for t in thetas]
            engine = self.scenario.engine
            try:
                result = self._positions_runner(
                    geometries[0].environment, [g.source_depth_m for g in geometries],
                    [g.source_range_m for g in geometries], self.scenario.array.receiver_depths_m,
                    self.scenario.freqs_hz, engine=engine.name, **engine.options_dict)
                values = np.asarray(result.transpose("position", "freq", "receiver").values, dtype=complex)
                if not np.all(np.isfinite(values)):
                    raise PropagationError("engine returned non-finite pressure")
                return list(values)
            except _CONFIG_ERRORS:
                raise
            except PropagationError as error:
                return [error] * len(thetas)
        out: list[np.ndarray | PropagationError] = []
        for theta in thetas:
            try:
                out.append(self.run_engine(theta))
            except _CONFIG_ERRORS:
                raise
            except PropagationError as error:
                out.append(error)
        return out

    def simulate(self, seed: int, indices: Sequence[int],
                 on_sample: Callable[[], None] | None = None) -> ChunkResult:
        """Simulates the given samples; engine failures are recorded, never raised.

        Args:
            seed: Dataset seed.
            indices: Sample indices, shape (n,).
            on_sample: Called after each sample (progress reporting).

        Raises:
            ConfigError: when the engine is missing or cannot represent the scenario at all.
        """
        indices = np.asarray(indices, dtype=np.int64)
        n = len(indices)
        n_freq, n_rec = self.observation.n_freq, self.observation.n_receiver
        theta = np.empty((n, len(self.scenario.prior)))
        snr = np.empty(n)
        pressure = np.full((n, n_freq, n_rec), np.nan + 1j * np.nan, dtype=complex)
        x = np.full((n, self.n_features), np.nan, dtype=np.float32)
        errors = [""] * n
        engine_seconds = 0.0
        reuse = self.scenario.simulation.environment_reuse
        groups = np.asarray(indices) // reuse
        for group in dict.fromkeys(groups.tolist()):
            ks = np.flatnonzero(groups == group)
            # The whole group is drawn and run even when the call needs part of it: a sample's value
            # then never depends on chunking (the engine solves one call for the group's positions).
            members = np.arange(group * reuse, (group + 1) * reuse) if reuse > 1 else indices[ks]
            draws = [self.draw(seed, int(i)) for i in members]
            start = time.perf_counter()
            try:
                results = self._run_group([d[0] for d in draws])
            except _CONFIG_ERRORS as error:
                raise ConfigError(f"scenario {self.scenario.name!r}: {str(error).splitlines()[0]}") from None
            engine_seconds += time.perf_counter() - start
            for k in ks:
                j = int(indices[k] - members[0]) if reuse > 1 else int(np.flatnonzero(members == indices[k])[0])
                theta[k], snr[k], rng = draws[j]
                p = results[j]
                if isinstance(p, PropagationError):
                    errors[k] = f"{type(p).__name__}: {p}"
                    p = None
                if p is not None:
                    noisy = add_noise(p, snr[k], rng) if np.isfinite(snr[k]) else p
                    features = self.observation.features_from_pressure(noisy)
                    if np.all(np.isfinite(features)):
                        pressure[k] = p
                        x[k] = features.astype(np.float32)
                    else:
                        errors[k] = "non-finite features"
                if on_sample is not None:
                    on_sample()
        return ChunkResult(indices, theta, snr, pressure, x, errors, engine_seconds)

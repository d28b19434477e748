"""Every inference method side by side on the same ``vina-gi`` simulations, scored against grid posteriors.

The experiment of VINA (Shekhar et al. 2026, arXiv 2602.20480) as set up in
``data/scenarios/vina-gi.toml``: water depth U[200.5, 236.5] m and sediment sound speed
U[1532, 1592] m/s from 5 receivers x 7 tones (``unit_pressure`` features, 68 numbers), KRAKEN,
SNR U[5, 25] dB per sample.

Methods (:data:`METHODS`; configurations in ``benchmarks/configs/compare-*.toml``), all trained on the
same first ``--n-train`` samples of ``--data`` and scored on the same test simulations of ``--test``:

* ``inn_*``: acoustic-inv's padded INN, with the simulator's own noise variables carried on the
  parameter side (``noise_mode = "theta_pad"``; the noise is regenerated from each sample's seeded
  random stream), trained with the VINA variational f-divergence (inverse form ``fdiv_inverse``, joint
  form ``fdiv_joint``; divergences KL, reverse KL, Jensen-Shannon, Pearson chi^2, squared Hellinger,
  GAN), Ardizzone et al. (2018) MMD, or maximum likelihood on ``z``;
* ``cinn_ml``: the conditional INN, maximum likelihood;
* ``cinn_ens3``: a deep ensemble of three such cINNs from consecutive seeds, pooled as an equal-weight
  mixture (:class:`acoustic_inv.models.EnsembleModel`, as the shipped SWellEx-96 model);
* ``npe``: sbi's NPE (``zuko_nsf``) with sbi's default training;
* ``bartlett``: the classical matched-field point estimate, the grid cell of largest incoherent
  multi-tone Bartlett power (mean over tones of the normalised ``|u^H g|^2``) over the reference
  grid's noise-free replicas;
* ``mcmc``: adaptive random-walk Metropolis (Haario, Saksman & Tamminen 2001, "An adaptive
  Metropolis algorithm") on the exact likelihood of :mod:`acoustic_inv.likelihood`, every step a
  real engine call (:meth:`acoustic_inv.simulation.Simulator.run_engine`, i.e.
  :func:`propagation.pressure` with the scenario's engine options), on a few observations only.

Reference: the grid posterior of :mod:`acoustic_inv.reference` (exact likelihood with the SNR
marginalised, locally refined where narrow) for each of the first ``--n-obs`` test observations.

Metrics:

* C2ST (``acoustic_inv.diagnostics.c2st``, torch classifier with early stopping, 5 folds) of
  ``--n-posterior`` draws against as many reference draws, per observation; mean and spread;
* Wasserstein-2 distance (POT, exact) between ``--n-wasserstein`` draws of each, both parameters
  scaled by their prior width (dimensionless), and 1-D Wasserstein-1 per parameter in its units;
* calibration on the first ``--n-calibration`` test simulations (``--n-calibration-draws`` draws
  each): coverage of central intervals at levels 0.05-0.95, calibration error = largest
  ``|coverage - level|`` per parameter (:func:`acoustic_inv.evaluate.evaluate_samples`), with SBC,
  TARP and the RMSE of the posterior mean;
* the VINA paper's accuracy number: for each test observation, the mean squared error of 1,000
  posterior draws to the truth, per parameter, averaged over the test simulations (see
  :data:`PAPER_METRIC`);
* training wall time; time to a posterior (``--n-posterior`` draws for one observation; and per
  observation when 1,000 draws are made for a batch of observations).

Goals (:data:`GOALS`): calibration error <= 0.03 per parameter; C2ST vs the grid <= 0.55; at least
as accurate as NPE at equal budget; a posterior >= 10,000 times faster than MCMC's.

Usage::

    python benchmarks/compare.py --data DATASET --test TESTSET --grid GRID.nc          # everything
    python benchmarks/compare.py --data D --test T --grid G --quick                    # smoke test
    python benchmarks/compare.py --data D --test T --grid G --methods cinn_ml npe --n-train 5000
    python benchmarks/compare.py --list                                               # the methods

Resumable: every method's result is cached in ``--work`` (default ``runs/compare``, or
``runs/compare-quick``) with the settings it was computed with; a killed run, started again with
the same arguments, reuses the finished methods (and the networks' per-epoch training state, the
reference draws and the MCMC chains finished so far). Changing a method's settings recomputes only
that method. Writes ``benchmarks/results/compare.json`` and ``compare.md`` (``compare-quick.*``
with ``--quick``) atomically.

Expected cost of the full run (one torch thread on the project's 2-core machine, shared; from
development runs on 1,000 samples, scaled): each reference posterior 1-2 minutes (a few hundred
refinement engine runs of about 0.1-0.15 s on a 24 x 24 grid, fewer on a finer one); each INN
3-6 minutes (about 3-5 s per epoch on 18,000 training pairs, 60-100 epochs), the cINN and NPE a few
minutes; C2ST 3-60 s per test (longest when the two samples are close), 13 methods x 10 observations;
MCMC ``--mcmc-steps`` engine runs per observation, about 5-7 minutes per chain of 2,000. In all about
2-3 hours; methods can be run one at a time (``--methods``), and every finished piece is kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import shutil
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Running this file puts benchmarks/ first on sys.path, where benchmarks/propagation.py would shadow
# the propagation package: the project root goes first and benchmarks/ last.
if sys.path and Path(sys.path[0] or ".").resolve() == HERE:
    sys.path.pop(0)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(HERE) not in sys.path:
    sys.path.append(str(HERE))

import numpy as np  # noqa: E402

import _methods  # noqa: E402

RESULTS_DIR = HERE / "results"
CONFIG_DIR = HERE / "configs"
FORMAT_VERSION = 1

#: The goals of the comparison (issue #6).
GOALS = {
    "calibration_error_max": 0.03,
    "c2st_max": 0.55,
    "speedup_vs_mcmc_min": 1e4,
}

#: How the VINA paper's accuracy number is defined, here and in its authors' code.
PAPER_METRIC = (
    "VINA (arXiv 2602.20480) reports the geoacoustic accuracy per parameter as the mean squared error of "
    "1,000 posterior draws to the true value of one held-out test observation, separately for water depth "
    "(m^2) and sediment sound speed ((m/s)^2). This definition is read from the authors' public code "
    "(github.com/ananya-ac/INN-Project, train_fdiv.py: num_samples = 1000 draws for one stored test pair, "
    "mse_depth and mse_speed = mean over draws of (draw - truth)^2); the paper's own text was not available "
    "to check. Here the same per-observation number is averaged over the first n_calibration test "
    "simulations (one observation would mostly measure that observation's posterior width), and also given "
    "on the K reference observations beside the grid reference's own value (posterior variance plus squared "
    "bias of the exact posterior: the floor a correct posterior reaches, on average, not zero). A point "
    "estimate (Bartlett) counts as a posterior of one draw: its squared error. Note the paper fed raw "
    "complex pressure of a known source; here the features are source-invariant (unit_pressure) and the "
    "SNR is unknown, U[5, 25] dB, so the numbers are not the paper's experiment exactly."
)


# ---------------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """One entry of the comparison.

    Attributes:
        name: Key on the command line and in the outputs.
        kind: ``"network"`` (acoustic-inv INN/cINN), ``"npe"``, ``"bartlett"`` or ``"mcmc"``.
        family: Group in the table (``"INN"``, ``"cINN"``, ``"sbi"``, ``"classical"``).
        description: One line for the table and ``--list``.
        config: File in ``benchmarks/configs`` with the method's settings (``None``: none).
        overrides: Settings that replace the file's (e.g. the f-divergence of a family).
    """

    name: str
    kind: str
    family: str
    description: str
    config: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def amortized(self) -> bool:
        """Whether the method trains once and then gives posteriors of any observation."""
        return self.kind in ("network", "npe")


DIVERGENCES = {
    "kl": "KL",
    "reverse_kl": "reverse KL",
    "js": "Jensen-Shannon",
    "pearson": "Pearson chi^2",
    "hellinger": "squared Hellinger",
    "gan": "GAN",
}


def _registry() -> dict[str, Method]:
    methods: list[Method] = []
    for key, label in DIVERGENCES.items():
        methods.append(Method(
            f"inn_fdiv_inverse_{key}", "network", "INN",
            f"INN, VINA inverse form (critic on (theta, y)), {label}",
            "compare-inn-fdiv-inverse.toml", {"f_divergence": key}))
    for key, label in DIVERGENCES.items():
        methods.append(Method(
            f"inn_fdiv_joint_{key}", "network", "INN",
            f"INN, VINA joint form (critic on [y, z]) + mse_y, {label}",
            "compare-inn-fdiv-joint.toml", {"f_divergence": key}))
    methods += [
        Method("inn_mmd", "network", "INN", "INN, Ardizzone et al. (2018): mse_y + MMD on [y, z] + MMD on theta",
               "compare-inn-mmd.toml"),
        Method("inn_ml", "network", "INN", "INN, maximum likelihood on z (ml_z) + mse_y", "compare-inn-ml.toml"),
        Method("cinn_ml", "network", "cINN", "cINN, maximum likelihood", "compare-cinn-ml.toml"),
        Method("cinn_ens3", "network", "cINN", "deep ensemble of 3 cINNs (seeds s, s+1, s+2), maximum likelihood",
               "compare-cinn-ml.toml", {"ensemble_members": 3}),
        Method("npe", "npe", "sbi", "sbi 0.27 NPE, zuko_nsf, sbi's default training", "compare-npe.toml"),
        Method("bartlett", "bartlett", "classical",
               "Bartlett matched-field grid search (incoherent over tones): point estimate"),
        Method("mcmc", "mcmc", "classical",
               "adaptive Metropolis on the exact likelihood, a KRAKEN run per step", "compare-mcmc.toml"),
    ]
    return {m.name: m for m in methods}


METHODS: dict[str, Method] = _registry()

#: What runs without ``--methods``: every inverse-form divergence, the joint form with
#: Jensen-Shannon, and one of every other family.
DEFAULT_METHODS = (
    *[f"inn_fdiv_inverse_{k}" for k in DIVERGENCES],
    "inn_fdiv_joint_js", "inn_mmd", "inn_ml", "cinn_ml", "cinn_ens3", "npe", "bartlett", "mcmc",
)
#: What ``--quick`` runs without ``--methods``: one of every family.
QUICK_METHODS = ("inn_fdiv_inverse_js", "inn_fdiv_joint_js", "inn_mmd", "inn_ml", "cinn_ml", "npe", "bartlett", "mcmc")

#: MCMC settings (``compare-mcmc.toml`` may set any of them).
MCMC_DEFAULTS: dict[str, Any] = {
    "n_steps": 2000,
    "n_observations": 3,
    "burn_in_fraction": 0.25,
    "init": "bartlett",
    "initial_scale_fraction": 0.005,
    "adapt_start": 100,
}


def method_settings(method: Method, *, quick: bool) -> dict[str, Any]:
    """The method's settings: its config file, then its overrides, then the quick-mode cuts.

    Raises:
        acoustic_inv.errors.ConfigError: for an unreadable config file.
    """
    from acoustic_inv.errors import ConfigError

    values: dict[str, Any] = {}
    if method.config is not None:
        path = CONFIG_DIR / method.config
        try:
            values = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: syntax error: {error}") from None
    values.update(method.overrides)
    if method.kind == "npe":
        unknown = sorted(set(values) - set(_methods.NPE_DEFAULTS))
        if unknown:
            raise ConfigError(f"{method.config}: unknown NPE settings {unknown}; expected {sorted(_methods.NPE_DEFAULTS)}")
        values = {**_methods.NPE_DEFAULTS, **values}
        if quick:
            values["max_num_epochs"] = 2
    elif method.kind == "mcmc":
        unknown = sorted(set(values) - set(MCMC_DEFAULTS))
        if unknown:
            raise ConfigError(f"{method.config}: unknown MCMC settings {unknown}; expected {sorted(MCMC_DEFAULTS)}")
        values = {**MCMC_DEFAULTS, **values}
        if values["init"] not in ("bartlett", "prior"):
            raise ConfigError(f"{method.config}: init = {values['init']!r}: expected 'bartlett' or 'prior'")
    elif method.kind == "network" and quick:
        values["epochs"] = 2
    return values


# ---------------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """One comparison run.

    Attributes:
        data: Training dataset directory.
        test: Test dataset directory.
        grid: Reference grid file (:func:`acoustic_inv.reference.simulate_grid`).
        n_train: Training samples (the first ones, by sample index).
        n_obs: Test observations with a reference posterior (the first ones), K.
        n_posterior: Draws per observation for C2ST and timing.
        n_wasserstein: Draws per observation for the Wasserstein distance.
        n_calibration: Test simulations for calibration, RMSE and the paper's MSE.
        n_calibration_draws: Draws per calibration simulation (the paper's MSE uses these).
        refine: Refine the reference posteriors where they are narrower than the grid.
        seed: Seed of training, draws and classifiers.
        threads: torch threads.
        quick: Smoke-test sizes.
        mcmc_steps: Override of the MCMC chain length (``None``: the config's).
        mcmc_obs: Override of the MCMC observation count (``None``: the config's).
    """

    data: str
    test: str
    grid: str
    n_train: int = 20_000
    n_obs: int = 10
    n_posterior: int = 10_000
    n_wasserstein: int = 2_000
    n_calibration: int = 1_000
    n_calibration_draws: int = 1_000
    refine: bool = True
    seed: int = 0
    threads: int = 1
    quick: bool = False
    mcmc_steps: int | None = None
    mcmc_obs: int | None = None

    def __post_init__(self) -> None:
        for name in ("n_train", "n_obs", "n_posterior", "n_wasserstein", "n_calibration", "n_calibration_draws",
                     "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} = {value!r}: expected an integer >= 1")
        if self.n_calibration < 2 or self.n_calibration_draws < 2:
            raise ValueError("n_calibration and n_calibration_draws: expected >= 2")
        if self.n_posterior < 20:
            raise ValueError(f"n_posterior = {self.n_posterior}: expected >= 20 (C2ST needs 5 folds)")


QUICK_SIZES = {"n_train": 1000, "n_obs": 2, "n_posterior": 500, "n_wasserstein": 300, "n_calibration": 100,
               "n_calibration_draws": 200, "refine": False, "mcmc_steps": 40, "mcmc_obs": 1}


# ---------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------


@dataclass
class Simulations:
    """The first samples of a dataset, in sample-index order.

    Attributes:
        path: The dataset directory.
        theta: Parameters, shape (n, d), in each parameter's units.
        x: Features, shape (n, m), float32.
        pressure: Noise-free pressure, shape (n, n_freq, n_receiver), complex.
        snr_db: The SNR of each sample's noise, shape (n,), dB.
        sample: Sample indices, shape (n,).
        params: One :class:`acoustic_inv.sources.ParamInfo` per parameter.
        scenario: The scenario the dataset was made with.
        meta: The dataset's ``meta.json``.
        chunks_used: Chunk files read.
        missing_chunks: Chunk indices absent below the last chunk read (a dataset still running).
    """

    path: str
    theta: np.ndarray
    x: np.ndarray
    pressure: np.ndarray
    snr_db: np.ndarray
    sample: np.ndarray
    params: tuple[Any, ...]
    scenario: Any
    meta: dict[str, Any]
    chunks_used: int
    missing_chunks: list[int]

    def __len__(self) -> int:
        return len(self.theta)

    def identity(self) -> dict[str, Any]:
        """What the results depend on: path, scenario hash, seed and the samples used."""
        return {
            "path": self.path,
            "scenario_sha256": self.meta.get("scenario_sha256"),
            "seed": self.meta.get("seed"),
            "n": len(self),
            "sample_first": int(self.sample[0]) if len(self) else None,
            "sample_last": int(self.sample[-1]) if len(self) else None,
            "sample_sum": int(self.sample.sum()),
        }


def load_simulations(path: str | Path, n: int) -> Simulations:
    """Reads the first ``n`` successful samples (by index) of a dataset, finished or still running.

    Chunk files are read in order until ``n`` samples are in hand; a dataset still being generated
    gives what its finished chunks hold (possibly fewer than ``n``).

    Raises:
        acoustic_inv.errors.DataError: when ``path`` is not a dataset or holds no finished chunk.
    """
    import xarray as xr

    from acoustic_inv.datasets import chunk_files, dataset_scenario, read_meta
    from acoustic_inv.errors import DataError
    from acoustic_inv.sources import ParamInfo

    path = Path(path)
    meta = read_meta(path)
    files = chunk_files(path)
    if not files:
        raise DataError(f"{path}: no finished chunk yet")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("theta", "x", "pressure", "snr_db", "sample")}
    count, used, indices = 0, 0, []
    for file in files:
        if count >= n:
            break
        with xr.open_dataset(file, engine="netcdf4") as ds:
            ds = ds.load()
        parts["theta"].append(np.asarray(ds["theta"].transpose("sample", "param").values, dtype=np.float64))
        parts["x"].append(np.asarray(ds["x"].values, dtype=np.float32))
        parts["pressure"].append(np.asarray(ds["pressure_real"].values) + 1j * np.asarray(ds["pressure_imag"].values))
        parts["snr_db"].append(np.asarray(ds["snr_db"].values, dtype=np.float64))
        parts["sample"].append(np.asarray(ds["sample"].values, dtype=np.int64))
        count += ds.sizes["sample"]
        used += 1
        indices.append(int(file.stem.split("-")[1]))
    joined = {k: np.concatenate(v) for k, v in parts.items()}
    order = np.argsort(joined["sample"], kind="stable")[:n]
    joined = {k: v[order] for k, v in joined.items()}
    missing = sorted(set(range(max(indices) + 1)) - set(indices)) if indices else []
    params = tuple(ParamInfo(str(p["name"]), str(p["units"]), float(p["low"]), float(p["high"])) for p in meta["params"])
    return Simulations(str(path), joined["theta"], joined["x"], joined["pressure"], joined["snr_db"], joined["sample"],
                       params, dataset_scenario(path), meta, used, missing)


def simulator_noise(sims: Simulations) -> np.ndarray:
    """The simulator's random variables behind each sample's features, regenerated from its seed
    (:func:`acoustic_inv.simulation.simulator_noise`; checked by :func:`check_simulator_noise`).

    Returns:
        Shape (n, 1 + 2 * n_freq * n_receiver), dimensionless.
    """
    from acoustic_inv.simulation import simulator_noise as regenerate

    n_freq, n_receiver = sims.pressure.shape[1:]
    return regenerate(int(sims.meta["seed"]), sims.sample, sims.theta.shape[1], n_freq, n_receiver)


def check_simulator_noise(sims: Simulations, noise: np.ndarray, n_check: int = 50) -> float:
    """Largest difference between stored features and those rebuilt from pressure and noise.

    Raises:
        acoustic_inv.errors.DataError: when the rebuilt features differ (the dataset was not made
            the way :func:`simulator_noise` assumes).
    """
    from acoustic_inv.errors import DataError
    from acoustic_inv.observation import ObservationModel, noise_variance

    model = ObservationModel.from_scenario(sims.scenario)
    k = min(n_check, len(sims))
    shape = sims.pressure.shape[1:]
    size = int(np.prod(shape))
    p = sims.pressure[:k]
    std = np.sqrt(noise_variance(p, sims.snr_db[:k]) / 2.0)[..., None]
    eps = noise[:k, 1:1 + size].reshape(k, *shape) + 1j * noise[:k, 1 + size:].reshape(k, *shape)
    rebuilt = model.features_from_pressure(p + std * eps)
    error = float(np.max(np.abs(rebuilt - sims.x[:k])))
    if not error < 1e-4:
        raise DataError(f"{sims.path}: the features rebuilt from the regenerated simulator noise differ from the "
                        f"stored ones by {error:.3g}; the INN's theta_pad mode cannot use this dataset's noise")
    return error


def same_scenario(a: Any, b: Any) -> bool:
    """Whether two scenarios describe the same experiment (their text, name and path may differ)."""
    skip = {"text", "path", "name", "description"}
    return all(getattr(a, f.name) == getattr(b, f.name) for f in fields(a) if f.name not in skip)


# ---------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------


def effective_sample_size(chain: np.ndarray) -> np.ndarray:
    """Effective sample size of each column of a Markov chain (Geyer's initial monotone sequence).

    The autocorrelations are summed in adjacent pairs ``Gamma_k = rho_2k + rho_2k+1`` up to the first
    non-positive pair, the pairs made non-increasing (Geyer 1992, "Practical Markov chain Monte Carlo");
    ``tau = -1 + 2 sum Gamma_k`` and ``ESS = n / tau``.

    Args:
        chain: Shape (n, d), any units.

    Returns:
        Shape (d,); NaN for a constant column (a chain that never moved).
    """
    chain = np.asarray(chain, dtype=float)
    n, d = chain.shape
    out = np.full(d, np.nan)
    for j in range(d):
        y = chain[:, j] - chain[:, j].mean()
        if n < 4 or not np.any(y != 0.0):
            continue
        spectrum = np.fft.rfft(y, 2 * n)
        acov = np.fft.irfft(spectrum * np.conj(spectrum))[:n] / n
        rho = acov / acov[0]
        pairs = rho[: 2 * (n // 2)].reshape(-1, 2).sum(axis=1)
        stop = np.flatnonzero(pairs <= 0.0)
        pairs = pairs[: stop[0]] if len(stop) else pairs
        pairs = np.minimum.accumulate(pairs)
        tau = max(-1.0 + 2.0 * float(pairs.sum()), 1.0 / n)
        out[j] = n / tau
    return out


@dataclass
class Chain:
    """An MCMC run.

    Attributes:
        theta: The chain, shape (n_steps + 1, d), the start first.
        log_density: Log target at each state, shape (n_steps + 1,).
        accepted: Whether each proposal was accepted, shape (n_steps,).
        evaluations: Target evaluations made (proposals inside the prior box).
        seconds: Wall time, s.
    """

    theta: np.ndarray
    log_density: np.ndarray
    accepted: np.ndarray
    evaluations: int
    seconds: float


def adaptive_metropolis(
    log_density: Callable[[np.ndarray], float],
    theta0: np.ndarray,
    n_steps: int,
    rng: np.random.Generator,
    low: np.ndarray,
    high: np.ndarray,
    *,
    initial_scale_fraction: float = 0.05,
    adapt_start: int = 200,
    on_step: Callable[[int], None] | None = None,
) -> Chain:
    """Random-walk Metropolis with the adaptive Gaussian proposal of Haario et al. (2001).

    The proposal is N(0, diag((f * (high - low))^2)) for the first ``adapt_start`` steps, then
    ``2.38^2 / d * (Cov(chain so far) + 1e-10 * width^2 I)`` (Haario et al.'s scaling for a Gaussian
    target, with a small ridge). Proposals outside the box ``[low, high]`` (a uniform prior's support)
    are rejected without evaluating the target.

    Args:
        log_density: Log target (prior times likelihood, unnormalised); ``-inf`` allowed.
        theta0: Start, shape (d,), inside the box, finite target.
        n_steps: Proposals to make.
        rng: Random stream.
        low: Lower bounds, shape (d,).
        high: Upper bounds, shape (d,).
        initial_scale_fraction: Initial proposal standard deviation as a fraction of the box width.
        adapt_start: Steps before the proposal adapts.
        on_step: Called with the step number after each step (progress).

    Returns:
        The :class:`Chain`.

    Raises:
        ValueError: when the start has a non-finite target.
    """
    started = time.perf_counter()
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    d = len(low)
    width = high - low
    current = np.asarray(theta0, dtype=float).copy()
    current_lp = float(log_density(current))
    if not np.isfinite(current_lp):
        raise ValueError(f"the MCMC start {current} has a non-finite log density")
    chain = np.empty((n_steps + 1, d))
    lps = np.empty(n_steps + 1)
    accepted = np.zeros(n_steps, dtype=bool)
    chain[0], lps[0] = current, current_lp
    evaluations = 1
    scale = 2.38 ** 2 / d
    cov = np.diag((initial_scale_fraction * width) ** 2)
    # Running mean and scatter of the chain (Welford), for the adaptive covariance.
    mean = current.copy()
    scatter = np.zeros((d, d))
    for step in range(1, n_steps + 1):
        if step > adapt_start:
            cov = scale * (scatter / (step - 1) + 1e-10 * np.diag(width ** 2))
        proposal = current + rng.multivariate_normal(np.zeros(d), cov, method="cholesky")
        if np.all(proposal >= low) and np.all(proposal <= high):
            proposal_lp = float(log_density(proposal))
            evaluations += 1
            if np.log(rng.random()) < proposal_lp - current_lp:
                current, current_lp = proposal, proposal_lp
                accepted[step - 1] = True
        chain[step], lps[step] = current, current_lp
        delta = current - mean
        mean = mean + delta / (step + 1)
        scatter = scatter + np.outer(delta, current - mean)
        if on_step is not None:
            on_step(step)
    return Chain(chain, lps, accepted, evaluations, time.perf_counter() - started)


def paper_mse(draws: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """The VINA paper's accuracy: per observation, mean over draws of the squared error to the truth.

    Args:
        draws: Shape (n_obs, n_draws, d), parameter units.
        truths: Shape (n_obs, d).

    Returns:
        Shape (n_obs, d), squared parameter units.
    """
    draws = np.asarray(draws, dtype=float)
    return np.mean((draws - np.asarray(truths, dtype=float)[:, None, :]) ** 2, axis=1)


def normalized(theta: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Parameters as fractions of the prior box, shape as ``theta``."""
    return (np.asarray(theta, dtype=float) - low) / (high - low)


def compare_to_reference(draws: np.ndarray, reference: np.ndarray, low: np.ndarray, high: np.ndarray, *,
                         n_wasserstein: int, seed: int) -> dict[str, Any]:
    """C2ST, Wasserstein distances and moment errors of ``draws`` against reference draws.

    Args:
        draws: Shape (n, d), parameter units (non-finite rows are dropped and counted).
        reference: Shape (n_ref, d).
        low: Prior lower bounds, shape (d,).
        high: Prior upper bounds, shape (d,).
        n_wasserstein: Draws of each used for the exact 2-D Wasserstein distance.
        seed: Classifier seed.
    """
    from scipy import stats

    from acoustic_inv.diagnostics import c2st, wasserstein

    finite = np.all(np.isfinite(draws), axis=1)
    out: dict[str, Any] = {"n_draws": int(len(draws)), "n_nonfinite": int((~finite).sum())}
    draws = draws[finite]
    if len(draws) < 20:
        out.update({"c2st": None, "failed": "fewer than 20 finite draws"})
        return out
    n = min(len(draws), len(reference))
    outside = np.any((draws < low) | (draws > high), axis=1)
    out["fraction_outside_prior"] = float(outside.mean())
    started = time.perf_counter()
    out["c2st"] = float(c2st(reference[:n], draws[:n], seed=seed))
    out["c2st_seconds"] = round(time.perf_counter() - started, 2)
    k = min(n, n_wasserstein)
    out["wasserstein2_normalized"] = float(wasserstein(normalized(reference[:k], low, high),
                                                       normalized(draws[:k], low, high), p=2))
    out["wasserstein1_per_param"] = [float(stats.wasserstein_distance(reference[:, j], draws[:, j]))
                                     for j in range(draws.shape[1])]
    ref_mean, ref_std = reference.mean(axis=0), reference.std(axis=0)
    out["mean_error_in_ref_std"] = ((draws.mean(axis=0) - ref_mean) / ref_std).tolist()
    out["std_ratio"] = (draws.std(axis=0) / ref_std).tolist()
    return out


def calibration_noise_floor(n_obs: int, seed: int, n_repeats: int = 2000,
                            levels: Sequence[float] | None = None) -> dict[str, Any]:
    """Calibration error of an exact posterior on ``n_obs`` simulations: the goal's noise floor.

    For an exact posterior the probability integral transform of each truth is uniform, and the truth
    lies in the central interval of level ``q`` when ``|2 PIT - 1| <= q``. Simulating that for
    ``n_obs`` observations gives the distribution of ``max_q |coverage(q) - q|`` for one parameter from
    binomial noise alone (the draws are taken as infinitely many).

    Returns:
        ``median`` and ``p95`` of the calibration error over ``n_repeats`` simulated test sets.
    """
    from acoustic_inv.evaluate import DEFAULT_LEVELS

    q = np.asarray(DEFAULT_LEVELS if levels is None else levels, dtype=float)
    rng = np.random.default_rng([seed, 13])
    half_width = np.abs(2.0 * rng.random((n_repeats, n_obs)) - 1.0)
    coverage = np.mean(half_width[:, :, None] <= q[None, None, :], axis=1)
    error = np.max(np.abs(coverage - q[None, :]), axis=1)
    return {"median": float(np.median(error)), "p95": float(np.quantile(error, 0.95)), "n_obs": n_obs,
            "n_repeats": n_repeats}


def _summary(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean, (population) standard deviation, median, extremes and count of the finite values."""
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None, "median": None, "min": None, "max": None, "n": 0}
    return {"mean": float(np.mean(finite)), "std": float(np.std(finite)), "median": float(np.median(finite)),
            "min": float(np.min(finite)), "max": float(np.max(finite)), "n": len(finite)}


# ---------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------


def _key_hash(key: Any) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Run:
    """Shared state of one comparison: data, the reference grid, the cached results."""

    def __init__(self, settings: Settings, work: Path, log: Callable[[str], None]) -> None:
        from acoustic_inv.errors import DataError
        from acoustic_inv.reference import ReferenceGrid

        self.settings = settings
        self.work = work
        self.log = log
        s = settings
        self.train = load_simulations(s.data, s.n_train)
        if len(self.train) < s.n_train:
            log(f"warning: {s.data} has only {len(self.train)} samples so far (asked for {s.n_train}); "
                "training on those")
        self.test = load_simulations(s.test, max(s.n_calibration, s.n_obs))
        if len(self.test) < max(s.n_calibration, s.n_obs):
            log(f"warning: {s.test} has only {len(self.test)} samples (asked for {max(s.n_calibration, s.n_obs)})")
        self.grid = ReferenceGrid.open(s.grid)
        for what, sims in (("test", self.test), ("grid", None)):
            other = self.grid.scenario if sims is None else sims.scenario
            if not same_scenario(self.train.scenario, other):
                raise DataError(f"{s.data} and the {what} ({s.test if sims else s.grid}) were made with different "
                                "scenarios; they must describe the same experiment")
        if [p.name for p in self.train.params] != list(self.grid.spec.names):
            raise DataError(f"parameters differ: dataset {[p.name for p in self.train.params]}, grid "
                            f"{list(self.grid.spec.names)}")
        self.low = np.array([p.low for p in self.train.params])
        self.high = np.array([p.high for p in self.train.params])
        self.names = [p.name for p in self.train.params]
        self.units = [p.units for p in self.train.params]
        self.k = min(s.n_obs, len(self.test))
        self.n_cal = min(s.n_calibration, len(self.test))
        self._noise: np.ndarray | None = None
        self._references: list[dict[str, Any]] | None = None

    # -- shared pieces ---------------------------------------------------------------------------

    def data_key(self) -> dict[str, Any]:
        """Everything a method's result depends on besides its own settings."""
        s = self.settings
        return {"format": FORMAT_VERSION, "train": self.train.identity(), "test": self.test.identity(),
                "grid": self.grid_identity(), "n_obs": self.k, "n_posterior": s.n_posterior,
                "n_wasserstein": s.n_wasserstein, "n_calibration": self.n_cal,
                "n_calibration_draws": s.n_calibration_draws, "seed": s.seed, "refine": s.refine}

    def grid_identity(self) -> dict[str, Any]:
        """What the reference depends on: the grid file, its cells and its scenario."""
        return {"path": str(Path(self.settings.grid).resolve()), "spec": self.grid.spec.to_dict(),
                "scenario_sha256": self.grid.scenario.sha256, "n_failed": self.grid.n_failed}

    def simulator_noise(self) -> np.ndarray:
        """The simulator noise of the training samples (for the INN's theta_pad mode), checked."""
        if self._noise is None:
            self._noise = simulator_noise(self.train)
            error = check_simulator_noise(self.train, self._noise)
            self.log(f"simulator noise regenerated for {len(self.train)} training samples "
                     f"({self._noise.shape[1]} variables each; features rebuilt to {error:.1e})")
        return self._noise

    def references(self) -> list[dict[str, Any]]:
        """Reference draws and summaries for the K observations (cached in the work dir)."""
        if self._references is not None:
            return self._references
        s = self.settings
        folder = self.work / "reference"
        folder.mkdir(parents=True, exist_ok=True)
        key = _key_hash({"grid": self.grid_identity(), "test": self.test.identity(), "n": s.n_posterior,
                         "seed": s.seed, "refine": s.refine})
        out = []
        for i in range(self.k):
            file = folder / f"obs-{i:03d}-{key}.npz"
            info_file = file.with_suffix(".json")
            if file.exists() and info_file.exists():
                draws = np.load(file)["draws"]
                info = json.loads(info_file.read_text())
            else:
                started = time.perf_counter()
                post = self.grid.posterior(self.test.x[i].astype(float), refine=s.refine)
                draws = post.sample(s.n_posterior, np.random.default_rng([s.seed, 7, i]))
                info = {"observation": i, "sample": int(self.test.sample[i]), "truth": self.test.theta[i].tolist(),
                        "snr_db": float(self.test.snr_db[i]), "seconds": round(time.perf_counter() - started, 3),
                        "engine_calls": int(post.engine_calls), "refine_rounds": int(post.refine_rounds),
                        "resolved": bool(post.resolved), "cells_holding_99": int(post.cells_holding(0.99)),
                        "n_cells": int(len(post.log_mass)), "mean": post.mean().tolist(), "std": post.std().tolist(),
                        "credible_level_of_truth": float(post.credible_level(self.test.theta[i]))}
                np.savez(file, draws=draws)
                _methods.write_json_atomic(info_file, info)
                self.log(f"reference {i}: {info['n_cells']} cells, {info['cells_holding_99']} hold 99 %, "
                         f"{info['engine_calls']} refinement runs, {info['seconds']:.1f} s")
            info["draws"] = draws
            out.append(info)
        self._references = out
        return out

    def reference_summary(self) -> dict[str, Any]:
        """The reference's own numbers: the paper's MSE on the K observations, the credible level of
        each truth, and the calibration-error noise floor of an exact posterior."""
        refs = self.references()
        truths = self.test.theta[: self.k]
        n_paper = min(1000, self.settings.n_posterior)
        mse = paper_mse(np.stack([r["draws"][:n_paper] for r in refs]), truths)
        return {
            "per_observation": [{k: v for k, v in r.items() if k != "draws"} for r in refs],
            "paper_mse_reference_obs": mse.mean(axis=0).tolist(),
            "seconds": _summary([r["seconds"] for r in refs]),
            "engine_calls_total": int(sum(r["engine_calls"] for r in refs)),
            "fraction_resolved": float(np.mean([r["resolved"] for r in refs])),
            "calibration_noise_floor": calibration_noise_floor(self.n_cal, self.settings.seed),
        }

    def bartlett_estimates(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """Bartlett grid-search estimates for observations ``x`` (n, m): (n, d) and seconds per observation."""
        from acoustic_inv.likelihood import unit_vectors_from_features

        grid = self.grid
        if not hasattr(self, "_replicas"):
            g = np.where(np.isfinite(grid.pressure), grid.pressure, 0.0)
            norm = np.linalg.norm(g, axis=-1, keepdims=True)
            self._replicas = np.where(norm > 0, g / np.where(norm > 0, norm, 1.0), 0.0)  # (G, F, R)
        started = time.perf_counter()
        out = np.empty((len(x), len(self.names)))
        for start in range(0, len(x), 25):
            u = unit_vectors_from_features(grid.observation, np.asarray(x[start:start + 25], dtype=float))
            power = np.abs(np.einsum("bfr,gfr->bgf", u.conj(), self._replicas)) ** 2
            out[start:start + 25] = grid.theta[np.argmax(power.mean(axis=-1), axis=1)]
        return out, (time.perf_counter() - started) / max(1, len(x))

    # -- methods ---------------------------------------------------------------------------------

    def run_method(self, method: Method) -> dict[str, Any]:
        """A method's result, from the cache when it was computed with the same settings."""
        s = self.settings
        values = method_settings(method, quick=s.quick)
        if method.kind == "mcmc":
            if s.mcmc_steps is not None:
                values["n_steps"] = s.mcmc_steps
            if s.mcmc_obs is not None:
                values["n_observations"] = s.mcmc_obs
        # Through JSON, so that it compares equal to the copy read back from the cache.
        key = json.loads(json.dumps({"data": self.data_key(), "method": asdict(method), "values": values},
                                    default=str))
        folder = self.work / method.name
        result_file = folder / "result.json"
        key_file = folder / "key.json"
        if result_file.exists():
            cached = json.loads(result_file.read_text())
            if cached.get("key") == key:
                self.log(f"{method.name}: cached result")
                return cached
        if key_file.exists() and json.loads(key_file.read_text()) != key:
            # A result or an interrupted run (training state, chains) made with other settings or data.
            self.log(f"{method.name}: settings or data changed since the cached work; starting afresh")
            shutil.rmtree(folder)
        elif key_file.exists():
            self.log(f"{method.name}: continuing an interrupted run")
        folder.mkdir(parents=True, exist_ok=True)
        _methods.write_json_atomic(key_file, key)
        runner = {"network": self._run_network, "npe": self._run_npe, "bartlett": self._run_bartlett,
                  "mcmc": self._run_mcmc}[method.kind]
        try:
            result = runner(method, values, folder)
        except Exception as error:  # one broken method must not stop the comparison of the others
            import traceback

            self.log(f"{method.name}: crashed: {type(error).__name__}: {error}")
            # Not cached: the next run tries again (a diverged training, a UserError, is cached as a result).
            return {"method": method.name, "kind": method.kind, "family": method.family,
                    "description": method.description, "settings": values,
                    "failed": f"crashed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                    "traceback": traceback.format_exc()}
        result.update({"key": key, "method": method.name, "kind": method.kind, "family": method.family,
                       "description": method.description, "settings": values})
        _methods.write_json_atomic(result_file, result)
        return result

    def _run_network(self, method: Method, values: dict[str, Any], folder: Path) -> dict[str, Any]:
        from acoustic_inv.errors import UserError

        s = self.settings
        values = {**values, "seed": s.seed}
        members = int(values.pop("ensemble_members", 1))
        noise = None
        if values.get("architecture") == "inn" and values.get("noise_mode", "y") == "theta_pad":
            noise = self.simulator_noise()
        self.log(f"{method.name}: training on {len(self.train)} samples")
        started = time.perf_counter()
        try:
            fitted = _methods.fit_network(self.train.theta, self.train.x, self.train.params, values,
                                          source=method.config or method.name, out=folder / "model.pt", noise=noise,
                                          members=members)
        except UserError as error:
            self.log(f"{method.name}: failed: {error}")
            return {"failed": str(error), "train_seconds": round(time.perf_counter() - started, 1)}
        wall = time.perf_counter() - started
        details = fitted.details
        # After a resume the wall time of this call misses the earlier epochs; the epoch times do not.
        train_s = wall if not details.get("resumed_from_epoch") else details.get("epoch_seconds_sum")
        return self._evaluate_amortized(method, fitted, train_s, details)

    def _run_npe(self, method: Method, values: dict[str, Any], folder: Path) -> dict[str, Any]:
        s = self.settings
        self.log(f"{method.name}: training on {len(self.train)} samples")
        started = time.perf_counter()
        fitted = _methods.fit_npe(self.train.theta, self.train.x, self.low, self.high, seed=s.seed, options=values)
        return self._evaluate_amortized(method, fitted, time.perf_counter() - started, fitted.details)

    def _evaluate_amortized(self, method: Method, fitted: _methods.Fitted, train_s: float | None,
                            details: dict[str, Any]) -> dict[str, Any]:
        from acoustic_inv.evaluate import evaluate_samples

        s = self.settings
        refs = self.references()
        per_obs = []
        for i, ref in enumerate(refs):
            started = time.perf_counter()
            draws = fitted.sample(self.test.x[i].astype(float), s.n_posterior, s.seed * 1000 + i)
            seconds = time.perf_counter() - started
            scores = compare_to_reference(draws, ref["draws"], self.low, self.high, n_wasserstein=s.n_wasserstein,
                                          seed=s.seed)
            scores["sample_seconds"] = seconds
            finite = draws[np.all(np.isfinite(draws), axis=1)][:1000]
            scores["paper_mse"] = (paper_mse(finite[None], self.test.theta[i][None])[0].tolist()
                                   if len(finite) else None)
            per_obs.append({"observation": i, **scores})
            self.log(f"{method.name}: observation {i}: C2ST {_fmt(scores.get('c2st'))}, "
                     f"W2 {_fmt(scores.get('wasserstein2_normalized'))}, {seconds * 1e3:.0f} ms for {s.n_posterior} draws")
        # Calibration on the test simulations, in batches of observations.
        n, draws_per = self.n_cal, s.n_calibration_draws
        x = self.test.x[:n].astype(float)
        samples = np.empty((n, draws_per, len(self.names)))
        started = time.perf_counter()
        for start in range(0, n, 100):
            samples[start:start + 100] = fitted.sample_batch(x[start:start + 100], draws_per, s.seed * 7919 + start)
        batch_s = (time.perf_counter() - started) / n
        truths = self.test.theta[:n]
        nonfinite = int(np.sum(~np.all(np.isfinite(samples), axis=-1)))
        calibration: dict[str, Any]
        if nonfinite:
            # A non-finite draw has no place in the interval statistics: clip it to the prior box
            # (it then counts as a draw at the edge, which is what it is worth) and say so.
            samples = np.clip(np.nan_to_num(samples, nan=0.5 * (self.low + self.high)), self.low, self.high)
        ev = evaluate_samples(samples, truths, self.names, self.units, seed=s.seed, seconds_per_posterior=batch_s)
        calibration = {
            "calibration_error": ev.calibration_error.tolist(),
            "coverage": ev.coverage.tolist(),
            "levels": ev.levels.tolist(),
            "rmse": ev.rmse.tolist(),
            "prior_std": ev.prior_std.tolist(),
            "sbc_p_value": ev.sbc_p_value.tolist(),
            "tarp_atc": ev.tarp_atc,
            "contraction": ev.contraction.tolist(),
            "z_mean": ev.z_mean.tolist(),
            "z_std": ev.z_std.tolist(),
            "paper_mse": paper_mse(samples[:, :1000], truths).mean(axis=0).tolist(),
            "n_obs": n,
            "n_draws": draws_per,
            "n_nonfinite_draws": nonfinite,
            "fraction_outside_prior": float(np.mean(np.any((samples < self.low) | (samples > self.high), axis=-1))),
            "seconds_per_posterior_batched": batch_s,
        }
        self.log(f"{method.name}: calibration error {np.round(ev.calibration_error, 3).tolist()}, RMSE "
                 f"{np.round(ev.rmse, 2).tolist()}")
        return {
            "train_seconds": None if train_s is None else round(float(train_s), 1),
            "details": details,
            "per_observation": per_obs,
            "c2st": _summary([o.get("c2st") for o in per_obs]),
            "wasserstein2_normalized": _summary([o.get("wasserstein2_normalized") for o in per_obs]),
            "sample_seconds": _summary([o["sample_seconds"] for o in per_obs]),
            "paper_mse_reference_obs": np.mean([o["paper_mse"] for o in per_obs if o["paper_mse"]], axis=0).tolist(),
            "calibration": calibration,
        }

    def _run_bartlett(self, method: Method, values: dict[str, Any], folder: Path) -> dict[str, Any]:
        refs = self.references()
        n = self.n_cal
        estimates, seconds = self.bartlett_estimates(self.test.x[:n])
        truths = self.test.theta[:n]
        err = estimates - truths
        per_obs = []
        for i, ref in enumerate(refs):
            ref_mean, ref_std = np.asarray(ref["mean"]), np.asarray(ref["std"])
            per_obs.append({"observation": i, "estimate": estimates[i].tolist(),
                            "error": err[i].tolist(),
                            "distance_to_reference_mean_in_ref_std": ((estimates[i] - ref_mean) / ref_std).tolist()})
        grid_cpu = self._grid_cpu_seconds()
        self.log(f"bartlett: RMSE {np.round(np.sqrt(np.mean(err ** 2, axis=0)), 2).tolist()}, "
                 f"{seconds * 1e3:.1f} ms per observation over {self.grid.spec.n_points} replicas")
        return {
            "per_observation": per_obs,
            "seconds_per_estimate": seconds,
            "grid_points": int(self.grid.spec.n_points),
            "grid_engine_cpu_seconds": grid_cpu,
            "calibration": {
                "rmse": np.sqrt(np.mean(err ** 2, axis=0)).tolist(),
                "paper_mse": np.mean(err ** 2, axis=0).tolist(),
                "n_obs": n,
                "fraction_at_grid_edge": float(np.mean(np.any(
                    (np.abs(estimates - self.low) < self.grid.spec.cell_width) |
                    (np.abs(estimates - self.high) < self.grid.spec.cell_width), axis=1))),
            },
        }

    def _grid_cpu_seconds(self) -> float | None:
        import xarray as xr

        try:
            with xr.open_dataset(self.settings.grid, engine="netcdf4") as ds:
                return float(np.nansum(ds["engine_cpu_s"].values))
        except (KeyError, OSError, ValueError):
            return None

    def _run_mcmc(self, method: Method, values: dict[str, Any], folder: Path) -> dict[str, Any]:
        from acoustic_inv.likelihood import log_likelihood, unit_vectors_from_features
        from acoustic_inv.simulation import Simulator
        from propagation.errors import PropagationError

        s = self.settings
        refs = self.references()
        simulator = Simulator(self.test.scenario)
        prior = self.test.scenario.prior
        quadrature = self.grid.quadrature
        n_obs = min(int(values["n_observations"]), self.k)
        n_steps = int(values["n_steps"])
        burn = int(round(values["burn_in_fraction"] * n_steps))
        per_obs = []
        for i in range(n_obs):
            file = folder / f"chain-{i:03d}.npz"
            info_file = file.with_suffix(".json")
            if file.exists() and info_file.exists():
                chain_theta = np.load(file)["theta"]
                info = json.loads(info_file.read_text())
                self.log(f"mcmc: observation {i}: cached chain")
            else:
                u = unit_vectors_from_features(simulator.observation, self.test.x[i].astype(float))
                engine = {"seconds": 0.0, "failures": 0}

                def log_density(theta: np.ndarray) -> float:
                    started = time.perf_counter()
                    try:
                        g = simulator.run_engine(theta)
                    except PropagationError:
                        engine["failures"] += 1
                        return -math.inf
                    finally:
                        engine["seconds"] += time.perf_counter() - started
                    return float(log_likelihood(u, g, quadrature)) + float(prior.log_prob(theta))

                rng = np.random.default_rng([s.seed, 11, i])
                if values["init"] == "bartlett":
                    init_started = time.perf_counter()
                    start = self.bartlett_estimates(self.test.x[i:i + 1])[0][0]
                    init_s = time.perf_counter() - init_started
                else:
                    start, init_s = prior.sample(rng), 0.0
                self.log(f"mcmc: observation {i}: {n_steps} steps from {np.round(start, 2).tolist()} ({values['init']})")
                chain = adaptive_metropolis(log_density, start, n_steps, rng, self.low, self.high,
                                            initial_scale_fraction=values["initial_scale_fraction"],
                                            adapt_start=int(values["adapt_start"]))
                chain_theta = chain.theta
                kept = chain.theta[1 + burn:]
                info = {
                    "observation": i,
                    "start": np.asarray(start).tolist(),
                    "init_seconds": init_s,
                    "seconds": chain.seconds,
                    "engine_seconds": engine["seconds"],
                    "engine_calls": chain.evaluations,
                    "engine_failures": engine["failures"],
                    "acceptance_rate": float(chain.accepted.mean()),
                    "acceptance_rate_after_burn_in": float(chain.accepted[burn:].mean()) if burn < n_steps else None,
                    "ess": effective_sample_size(kept).tolist(),
                    "n_kept": int(len(kept)),
                }
                np.savez(file, theta=chain.theta, log_density=chain.log_density, accepted=chain.accepted)
                _methods.write_json_atomic(info_file, info)
            kept = chain_theta[1 + burn:]
            scores = compare_to_reference(kept, refs[i]["draws"], self.low, self.high,
                                          n_wasserstein=s.n_wasserstein, seed=s.seed)
            info.update(scores)
            info["paper_mse"] = paper_mse(kept[None], self.test.theta[i][None])[0].tolist()
            info["seconds_per_ess"] = (info["seconds"] / min(info["ess"])
                                       if info["ess"] and all(e and np.isfinite(e) for e in info["ess"]) else None)
            per_obs.append(info)
            self.log(f"mcmc: observation {i}: {info['seconds']:.0f} s, acceptance {info['acceptance_rate']:.2f}, "
                     f"ESS {np.round(info['ess'], 0).tolist()}, C2ST {_fmt(info.get('c2st'))}")
        return {
            "per_observation": per_obs,
            "c2st": _summary([o.get("c2st") for o in per_obs]),
            "wasserstein2_normalized": _summary([o.get("wasserstein2_normalized") for o in per_obs]),
            "seconds": _summary([o["seconds"] for o in per_obs]),
            "acceptance_rate": _summary([o["acceptance_rate"] for o in per_obs]),
            "ess_min": _summary([min(o["ess"]) if all(np.isfinite(o["ess"])) else None for o in per_obs]),
            "burn_in": burn,
        }


def _typical(summary: dict[str, Any]) -> float | None:
    """The median of a :func:`_summary` (its mean for results cached before medians were kept)."""
    return summary.get("median", summary.get("mean"))


def _signed(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


# ---------------------------------------------------------------------------------------------------
# Goals and the table
# ---------------------------------------------------------------------------------------------------


def goals(results: dict[str, dict[str, Any]], n_posterior: int | None = None) -> dict[str, dict[str, Any]]:
    """MET / MISSED / n/a for each amortized method of ours against :data:`GOALS`.

    * calibration: largest per-parameter calibration error <= 0.03;
    * C2ST: mean over the reference observations <= 0.55;
    * NPE: at least as accurate as NPE on the same simulations: neither the mean C2ST nor the mean W2
      above NPE's by more than the standard error of the paired per-observation differences (a tie
      within the noise counts; :func:`_versus_npe`);
    * speed: MCMC's time to ``n_posterior`` effective draws of one observation (its measured seconds per
      effective sample, mean over its observations, times ``n_posterior``) over the method's median time
      to ``n_posterior`` independent draws >= 10^4. A chain's draws are correlated, so a posterior of as
      many independent draws as the network gives costs MCMC that much longer than the chain it ran;
      the ratio to the chain as run is reported beside it (and decides when ``n_posterior`` or the
      chains' ESS is unknown).
    """
    npe = results.get("npe")
    mcmc = results.get("mcmc")
    out: dict[str, dict[str, Any]] = {}
    for name, r in results.items():
        if r.get("kind") != "network":
            continue
        entry: dict[str, Any] = {}
        if r.get("failed"):
            out[name] = {g: {"status": "n/a", "why": "training failed"} for g in ("calibration", "c2st", "npe", "speed")}
            continue
        cal = r["calibration"]["calibration_error"]
        entry["calibration"] = {"status": "MET" if max(cal) <= GOALS["calibration_error_max"] else "MISSED",
                                "value": cal, "goal": f"<= {GOALS['calibration_error_max']} per parameter"}
        c2 = r["c2st"]["mean"]
        entry["c2st"] = {"status": "n/a" if c2 is None else ("MET" if c2 <= GOALS["c2st_max"] else "MISSED"),
                         "value": c2, "goal": f"mean <= {GOALS['c2st_max']}"}
        if npe and not npe.get("failed") and npe.get("c2st", {}).get("mean") is not None and c2 is not None:
            entry["npe"] = _versus_npe(r, npe)
        else:
            entry["npe"] = {"status": "n/a", "why": "no NPE result"}
        if mcmc and mcmc.get("seconds", {}).get("mean") and _typical(r["sample_seconds"]):
            ratio = mcmc["seconds"]["mean"] / _typical(r["sample_seconds"])
            batched = r["calibration"].get("seconds_per_posterior_batched")
            per_ess = [o.get("seconds_per_ess") for o in mcmc.get("per_observation", [])]
            per_ess = [v for v in per_ess if v is not None and math.isfinite(v)]
            ratio_ess = (float(np.mean(per_ess)) * n_posterior / _typical(r["sample_seconds"])
                         if per_ess and n_posterior else None)
            deciding = ratio_ess if ratio_ess is not None else ratio
            entry["speed"] = {"status": "MET" if deciding >= GOALS["speedup_vs_mcmc_min"] else "MISSED",
                              "value": deciding,
                              "value_equal_ess": ratio_ess,
                              "value_chain_as_run": ratio,
                              "value_1000_batched": mcmc["seconds"]["mean"] / batched if batched else None,
                              "draws_batched": r["calibration"]["n_draws"],
                              "goal": f">= {GOALS['speedup_vs_mcmc_min']:.0f}x (MCMC time to n_posterior effective "
                                      "draws / the method's time to n_posterior draws)"}
        else:
            entry["speed"] = {"status": "n/a", "why": "no MCMC result"}
        out[name] = entry
    return out


def _paired(mine: dict[str, Any], theirs: dict[str, Any], key: str) -> tuple[float, float] | None:
    """Mean and standard error of ``mine - theirs`` for a per-observation score, paired by observation."""
    a = {o["observation"]: o.get(key) for o in mine["per_observation"]}
    b = {o["observation"]: o.get(key) for o in theirs["per_observation"]}
    diffs = [a[k] - b[k] for k in a if k in b and a[k] is not None and b[k] is not None]
    if not diffs:
        return None
    se = float(np.std(diffs, ddof=1) / np.sqrt(len(diffs))) if len(diffs) > 1 else 0.0
    return float(np.mean(diffs)), se


def _versus_npe(result: dict[str, Any], npe: dict[str, Any]) -> dict[str, Any]:
    """The "as accurate as NPE" goal: neither C2ST nor W2 worse than NPE's beyond one standard error.

    C2ST saturates at 1 for posteriors that are both far from the reference, so the W2 distance, which
    keeps ranking them, is required too.
    """
    c2 = _paired(result, npe, "c2st")
    w2 = _paired(result, npe, "wasserstein2_normalized")
    worse = [name for name, d in (("C2ST", c2), ("W2", w2)) if d is not None and d[0] > d[1]]
    return {
        "status": "MISSED" if worse else "MET",
        "worse_in": worse,
        "c2st_minus_npe": None if c2 is None else c2[0], "c2st_standard_error": None if c2 is None else c2[1],
        "w2_minus_npe": None if w2 is None else w2[0], "w2_standard_error": None if w2 is None else w2[1],
        "rmse_ratio_to_npe": (np.asarray(result["calibration"]["rmse"]) / np.asarray(npe["calibration"]["rmse"])).tolist(),
        "goal": "mean C2ST and mean W2 minus NPE's, paired over observations, each at most its standard error",
    }


def _pm(summary: dict[str, Any] | None, digits: int = 3) -> str:
    if not summary or summary.get("mean") is None:
        return "n/a"
    if summary.get("n", 1) > 1:
        return f"{summary['mean']:.{digits}f} ± {summary['std']:.{digits}f}"
    return f"{summary['mean']:.{digits}f}"


def _pair(values: Sequence[float] | None, digits: int) -> str:
    if not values:
        return "n/a"
    return " / ".join(f"{v:.{digits}f}" if v is not None else "n/a" for v in values)


def _seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value < 1:
        return f"{value * 1e3:.1f} ms"
    return f"{value:.1f} s" if value < 100 else f"{value:.0f} s"


def markdown(document: dict[str, Any]) -> str:
    """The comparison as Markdown: the main table, the paper's MSE, the goals, MCMC, definitions."""
    s = document["settings"]
    results = document["methods"]
    ref = document["reference"]
    d = document["data"]
    floor = ref["calibration_noise_floor"]
    n_post = s["n_posterior"]
    lines = [
        f"# vina-gi: every method on the same simulations{' (QUICK smoke test: not a result)' if s['quick'] else ''}",
        "",
        f"Training: the first {d['train']['n']} samples of `{s['data']}`; test: `{s['test']}`; reference: grid "
        f"posteriors of `{s['grid']}` ({document['grid']['shape'][0]} x {document['grid']['shape'][1]} cells"
        f"{', locally refined' if s['refine'] else ', not refined'}; {ref['fraction_resolved']:.0%} of them resolved "
        f"by at least 30 cells). C2ST and W2 on the first {d['n_obs']} test observations ({n_post} draws each); "
        f"calibration, RMSE and the paper's MSE on the first {d['n_calibration']} test simulations "
        f"({s['n_calibration_draws']} draws each). Seed {s['seed']}, {document['machine']['torch_threads']} torch "
        f"thread(s), {document['machine']['cpus']} CPUs (load {document['machine']['load_average'][0]:.1f} at the "
        f"start), {document['created']}.",
        "",
    ]
    if not s["refine"]:
        lines += ["**The reference posteriors were not refined**: where a posterior is narrower than a grid cell "
                  "(see the fraction resolved above), the coarse grid puts its mass in the wrong cells, and every score against it "
                  "is unreliable. Use it for smoke tests only.", ""]
    lines += [
        "| method | C2ST vs grid | W2 (prior-scaled) | cal. error depth / speed | RMSE depth (m) / speed (m/s) | "
        f"train | posterior ({n_post} draws) |",
        "|---|---|---|---|---|---|---|",
        f"| grid reference | 0.5 | 0 | exact: {floor['median']:.3f} median, {floor['p95']:.3f} at 95 % (noise) | "
        f"n/a | grid: {_seconds(document['grid'].get('engine_cpu_seconds'))} CPU | "
        f"{_seconds(ref['seconds']['mean'])}{' (with refinement)' if s['refine'] else ''} |",
    ]
    for name, r in results.items():
        if r.get("failed"):
            lines.append(f"| `{name}` | failed: {r['failed'][:100]} | | | | {_seconds(r.get('train_seconds'))} | |")
            continue
        cal = r.get("calibration", {})
        if r["kind"] in ("network", "npe"):
            lines.append(
                f"| `{name}` | {_pm(r['c2st'])} | {_pm(r['wasserstein2_normalized'])} | "
                f"{_pair(cal.get('calibration_error'), 3)} | {_pair(cal.get('rmse'), 2)} | "
                f"{_seconds(r.get('train_seconds'))} | {_seconds(_typical(r['sample_seconds']))} |")
        elif r["kind"] == "bartlett":
            lines.append(
                f"| `bartlett` (point estimate) | n/a | n/a | n/a | {_pair(cal.get('rmse'), 2)} | "
                f"none (grid above) | {_seconds(r.get('seconds_per_estimate'))} per estimate |")
        elif r["kind"] == "mcmc":
            lines.append(
                f"| `mcmc` ({len(r['per_observation'])} obs, {r['settings']['n_steps']} steps) | {_pm(r['c2st'])} | "
                f"{_pm(r['wasserstein2_normalized'])} | n/a | n/a | none | {_seconds(r['seconds']['mean'])} per chain |")
    lines += ["", "## The VINA paper's accuracy number", "",
              "Mean squared error of 1,000 posterior draws to the truth, per observation, averaged (see Definitions).",
              "", f"| method | on the {d['n_obs']} reference observations: depth (m²) / speed ((m/s)²) | "
              f"on the {d['n_calibration']} test simulations: depth / speed |", "|---|---|---|",
              f"| grid reference (exact posterior) | {_pair(ref['paper_mse_reference_obs'], 3)} | n/a |"]
    for name, r in results.items():
        if r.get("failed"):
            continue
        on_ref = r.get("paper_mse_reference_obs") or _mean_list(r, "paper_mse")
        on_test = r.get("calibration", {}).get("paper_mse")
        label = {"bartlett": "`bartlett` (squared error of the estimate)",
                 "mcmc": f"`mcmc` (its {len(r['per_observation'])} observations)"}.get(r["kind"], f"`{name}`")
        if r["kind"] == "bartlett":
            on_ref = np.mean([np.square(o["error"]) for o in r["per_observation"]], axis=0).tolist()
        lines.append(f"| {label} | {_pair(on_ref, 3)} | {_pair(on_test, 3)} |")
    lines += ["", "## Goals", "",
              "| method | calibration error <= 0.03 | C2ST <= 0.55 | as accurate as NPE | >= 10^4x faster than MCMC |",
              "|---|---|---|---|---|"]
    for name, g in document["goals"].items():
        cells = []
        for key in ("calibration", "c2st", "npe", "speed"):
            e = g[key]
            if e["status"] == "n/a":
                cells.append(f"n/a ({e.get('why', '')})")
            elif key == "calibration":
                cells.append(f"{e['status']} ({_pair(e['value'], 3)})")
            elif key == "c2st":
                cells.append(f"{e['status']} ({e['value']:.3f})")
            elif key == "npe":
                cells.append(f"{e['status']} (C2ST {_signed(e['c2st_minus_npe'])} ± {_fmt(e['c2st_standard_error'])}, "
                             f"W2 {_signed(e['w2_minus_npe'])} ± {_fmt(e['w2_standard_error'])})")
            else:
                if e.get("value_equal_ess") is not None:
                    cells.append(f"{e['status']} ({e['value_equal_ess']:.3g}x at equal ESS; "
                                 f"{e['value_chain_as_run']:.3g}x against the chain as run)")
                else:
                    extra = (f"; {e['value_1000_batched']:.3g}x for {e['draws_batched']} draws in batches"
                             if e.get("value_1000_batched") else "")
                    cells.append(f"{e['status']} ({e['value']:.3g}x{extra})")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    mc = results.get("mcmc")
    if mc and not mc.get("failed"):
        lines += ["", "## MCMC (adaptive Metropolis, one KRAKEN run per step)", "",
                  "| observation | wall time | engine calls | acceptance | ESS depth / speed | s per ESS | C2ST vs grid |",
                  "|---|---|---|---|---|---|---|"]
        for o in mc["per_observation"]:
            lines.append(f"| {o['observation']} | {_seconds(o['seconds'])} | {o['engine_calls']} | "
                         f"{o['acceptance_rate']:.2f} | {_pair(o['ess'], 0)} | {_fmt(o.get('seconds_per_ess'), 2)} | "
                         f"{_fmt(o.get('c2st'))} |")
        lines.append("")
        lines.append(f"Burn-in: the first {mc['burn_in']} steps dropped; C2ST on the remaining (correlated) draws "
                     f"against as many reference draws. Start: {mc['settings']['init']}.")
    failed = [name for name, r in results.items() if r.get("failed")]
    if failed:
        lines += ["", "## Failures", ""] + [f"- `{name}`: {results[name]['failed']}" for name in failed]
    lines += ["", "## Definitions", "",
              "- C2ST: `acoustic_inv.diagnostics.c2st` (torch MLP with early stopping, 5 folds), method draws "
              "against as many grid-reference draws; 0.5 is perfect. Mean ± standard deviation over observations.",
              f"- W2: exact 2-Wasserstein distance (POT) between {s['n_wasserstein']} draws of each, parameters "
              "scaled to [0, 1] over the prior box.",
              "- Calibration error: largest |coverage - level| of central credible intervals over levels "
              "0.05-0.95, per parameter. The reference row gives the same number for an exact posterior on as many "
              "simulations (binomial noise only): the goal of 0.03 sits near that floor.",
              "- RMSE: of the posterior mean (Bartlett: of the point estimate) over the test simulations.",
              f"- Paper MSE: {PAPER_METRIC}",
              "- Posterior time: median over the observations of the wall time for one observation's draws; "
              "MCMC: its whole chain, mean over its observations. Training time: wall "
              "time of the training call (sum of epoch times for a resumed run).",
              "- Goal \"as accurate as NPE\": mean C2ST minus NPE's and mean W2 minus NPE's, paired over the "
              "observations, each at most its standard error (W2 too, because C2ST saturates at 1 when both are far "
              "off). Goal \"10^4x faster\": MCMC's time to as many effective draws as the method gives "
              f"({n_post}; its seconds per effective sample, mean over its observations, times {n_post}) over the "
              f"method's time to {n_post} draws of one observation. The ratio to the chain as it ran (correlated "
              "draws, far fewer effective ones) is given beside it."]
    return "\n".join(lines) + "\n"


def _mean_list(result: dict[str, Any], key: str) -> list[float] | None:
    values = [o[key] for o in result["per_observation"] if o.get(key)]
    return np.mean(values, axis=0).tolist() if values else None


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="training dataset directory (vina-gi)")
    parser.add_argument("--test", help="test dataset directory")
    parser.add_argument("--grid", help="reference grid file (acoustic_inv.reference.simulate_grid)")
    parser.add_argument("--n-train", type=int, default=None, help="training samples (20000)")
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=None,
                        help="methods to run (default: see --list)")
    parser.add_argument("--n-obs", type=int, default=None, help="reference observations K (10)")
    parser.add_argument("--n-posterior", type=int, default=None, help="draws per observation for C2ST (10000)")
    parser.add_argument("--n-wasserstein", type=int, default=None, help="draws for the exact W2 (2000)")
    parser.add_argument("--n-calibration", type=int, default=None, help="test simulations for calibration (1000)")
    parser.add_argument("--n-calibration-draws", type=int, default=None, help="draws per calibration simulation (1000)")
    parser.add_argument("--no-refine", action="store_true", help="reference posteriors without local refinement")
    parser.add_argument("--mcmc-steps", type=int, default=None, help="MCMC steps per chain (config: 2000)")
    parser.add_argument("--mcmc-obs", type=int, default=None, help="observations with an MCMC chain (config: 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--work", type=Path, default=None, help="cache directory (runs/compare[-quick])")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where compare.json and compare.md go")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 1000 training samples, 2 epochs, 2 observations, small draws, 40 MCMC steps")
    parser.add_argument("--list", action="store_true", help="print the methods and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, m in METHODS.items():
            mark = "*" if name in DEFAULT_METHODS else " "
            print(f"{mark} {name:24s} {m.description}" + (f"  [{m.config}]" if m.config else ""))
        print("(* = run by default)")
        return 0
    for name in ("data", "test", "grid"):
        if getattr(args, name) is None:
            parser.error(f"--{name} is required")

    from acoustic_inv.errors import UserError

    quick = args.quick
    sizes = dict(QUICK_SIZES) if quick else {}
    for name in ("n_train", "n_obs", "n_posterior", "n_wasserstein", "n_calibration", "n_calibration_draws",
                 "mcmc_steps", "mcmc_obs"):
        value = getattr(args, name)
        if value is not None:
            sizes[name] = value
    if args.no_refine:
        sizes["refine"] = False
    try:
        settings = Settings(data=str(args.data), test=str(args.test), grid=str(args.grid), seed=args.seed,
                            threads=args.threads, quick=quick, **sizes)
    except ValueError as error:
        parser.error(str(error))
    methods = args.methods or list(QUICK_METHODS if quick else DEFAULT_METHODS)

    import torch

    torch.set_num_threads(settings.threads)
    work = args.work or ROOT / "runs" / ("compare-quick" if quick else "compare")
    stem = "compare-quick" if quick else "compare"

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    started = time.perf_counter()
    machine_start = _methods.machine(settings.threads)
    try:
        run = Run(settings, work, log)
        log(f"{len(run.train)} training samples, {len(run.test)} test samples, grid {run.grid.spec.shape}")
        reference = run.reference_summary()
        results = {}
        for name in methods:
            results[name] = run.run_method(METHODS[name])
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    machine = {**machine_start, "load_average_end": list(__import__("os").getloadavg()),
               "wall_seconds": round(time.perf_counter() - started, 1)}
    document = {
        "benchmark": "compare",
        "format_version": FORMAT_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["benchmarks/compare.py", *(argv if argv is not None else sys.argv[1:])]),
        "settings": asdict(settings),
        "data": {"train": {**run.train.identity(), "chunks_used": run.train.chunks_used,
                           "missing_chunks_below_last": run.train.missing_chunks,
                           "dataset_status": run.train.meta.get("status")},
                 "test": run.test.identity(), "n_obs": run.k, "n_calibration": run.n_cal,
                 "scenario": run.train.scenario.name, "params": run.names, "units": run.units,
                 "prior_low": run.low.tolist(), "prior_high": run.high.tolist()},
        "grid": {"path": settings.grid, "shape": list(run.grid.spec.shape), "n_points": run.grid.spec.n_points,
                 "n_failed": run.grid.n_failed, "cell_width": run.grid.spec.cell_width.tolist(),
                 "engine_cpu_seconds": run._grid_cpu_seconds(),
                 "engine_options": run.grid.scenario.engine.options_dict},
        "reference": reference,
        "methods": results,
        "goals": goals(results, settings.n_posterior),
        "goal_thresholds": GOALS,
        "paper_metric": PAPER_METRIC,
        "versions": _methods.versions(),
        "machine": machine,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    _methods.write_json_atomic(args.out / f"{stem}.json", document)
    table = markdown(json.loads((args.out / f"{stem}.json").read_text()))
    _methods.write_text_atomic(args.out / f"{stem}.md", table)
    log(f"wrote {args.out / (stem + '.json')} and {stem}.md")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The sbibm benchmark tasks two_moons, slcp and gaussian_linear, and their reference posteriors.

Priors and simulators re-implement the definitions of Lueckmann et al. (2021), "Benchmarking
simulation-based inference" (the ``sbibm`` package, version 1.1.0), in numpy. The observations and
reference posterior samples are read from the ``sbibm`` wheel itself, downloaded once without its
dependencies (installing ``sbibm`` would downgrade sbi and scipy) into a cache directory outside the
repository: ``$ACOUSTIC_INV_CACHE/sbibm`` or ``~/.cache/acoustic-inv/sbibm``.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import math
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np

SBIBM_VERSION = "1.1.0"
SBIBM_WHEEL = f"sbibm-{SBIBM_VERSION}-py2.py3-none-any.whl"
# sha256 of the PyPI wheel, checked after every download and on every read of the cache.
SBIBM_WHEEL_SHA256 = "12ecc6b4d327b92f9225f08faa6405e4274fb8e75943d86a53157d1b1bcfaf74"
N_OBSERVATIONS = 10  # observations with reference posteriors that sbibm ships for each task


@dataclass(frozen=True)
class Task:
    """One benchmark task: a prior, a simulator and the dimensions of theta and x.

    Attributes:
        name: sbibm name of the task.
        dim_theta: Number of parameters.
        dim_x: Number of data values per simulation.
        prior_kind: ``"uniform"`` (independent, on ``[prior_low, prior_high]``) or ``"gaussian"``
            (independent, mean ``prior_loc``, variance ``prior_var``).
        prior_low: Lower bounds of a uniform prior, shape (dim_theta,).
        prior_high: Upper bounds of a uniform prior, shape (dim_theta,).
        prior_loc: Mean of a Gaussian prior, shape (dim_theta,).
        prior_var: Variance of a Gaussian prior, shape (dim_theta,).
        simulator: ``simulator(theta, rng)`` with theta (n, dim_theta) returns ``(x, noise)``: x
            (n, dim_x) and the realization of the simulator's random variables, noise (n,
            noise_dim), as standard normals, such that x is a deterministic function of theta
            and noise (what the padded INN carries on its parameter side).
        noise_dim: Number of random variables per simulation.
    """

    name: str
    dim_theta: int
    dim_x: int
    prior_kind: Literal["uniform", "gaussian"]
    simulator: Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]
    noise_dim: int
    prior_low: tuple[float, ...] = ()
    prior_high: tuple[float, ...] = ()
    prior_loc: tuple[float, ...] = ()
    prior_var: tuple[float, ...] = ()

    def sample_prior(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draws ``n`` parameter vectors from the prior, shape (n, dim_theta)."""
        if self.prior_kind == "uniform":
            low, high = np.array(self.prior_low), np.array(self.prior_high)
            return low + (high - low) * rng.random((n, self.dim_theta))
        loc, var = np.array(self.prior_loc), np.array(self.prior_var)
        return loc + np.sqrt(var) * rng.standard_normal((n, self.dim_theta))

    def simulate(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Runs the simulator: theta (n, dim_theta) to x (n, dim_x)."""
        return self.simulate_with_noise(theta, rng)[0]

    def simulate_with_noise(self, theta: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Runs the simulator and returns its noise realization too.

        Consumes ``rng`` exactly as :meth:`simulate`, so both give the same x for the same state.

        Returns:
            x (n, dim_x) and noise (n, noise_dim), the simulator's random variables as standard
            normals (see each simulator).
        """
        theta = np.asarray(theta, dtype=np.float64)
        if theta.ndim != 2 or theta.shape[1] != self.dim_theta:
            raise ValueError(f"theta: expected shape (n, {self.dim_theta}), got {theta.shape}")
        return self.simulator(theta, rng)

    def prior_variance(self) -> np.ndarray:
        """Marginal prior variances, shape (dim_theta,)."""
        if self.prior_kind == "uniform":
            return (np.array(self.prior_high) - np.array(self.prior_low)) ** 2 / 12.0
        return np.array(self.prior_var)

    def in_support(self, theta: np.ndarray) -> np.ndarray:
        """Whether each row of theta (n, dim_theta) has non-zero prior density, shape (n,)."""
        if self.prior_kind == "uniform":
            return np.all((theta >= self.prior_low) & (theta <= self.prior_high), axis=-1)
        return np.all(np.isfinite(theta), axis=-1)


# ---------------------------------------------------------------------------------------------
# Simulators

_MOON_RADIUS_MEAN = 0.1
_MOON_RADIUS_STD = 0.01
_MOON_OFFSET = 0.25


def _two_moons(theta: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two moons: a noisy half circle, shifted by a folded rotation of theta.

    A point on the right half of a circle (angle uniform in [-pi/2, pi/2], radius ~ N(0.1, 0.01^2))
    centred at (0.25, 0) is shifted by ``(-|t0|, t1)``, with ``t`` theta rotated by 45 degrees:
    ``t0 = (theta0 + theta1) / sqrt(2)``, ``t1 = (theta1 - theta0) / sqrt(2)``. The absolute value
    makes the posterior bimodal.

    Noise (n, 2): the normal scores of angle and radius, ``Phi^-1(angle / pi + 1/2)`` and
    ``(radius - 0.1) / 0.01``: the same draws, on an unbounded scale that a flow maps easily (the
    uniform angle's hard edges would not be).
    """
    from scipy.special import ndtri

    n = theta.shape[0]
    angle = rng.uniform(-math.pi / 2.0, math.pi / 2.0, size=n)
    radius = rng.normal(_MOON_RADIUS_MEAN, _MOON_RADIUS_STD, size=n)
    t0 = (theta[:, 0] + theta[:, 1]) / math.sqrt(2.0)
    t1 = (theta[:, 1] - theta[:, 0]) / math.sqrt(2.0)
    x = np.stack(
        [radius * np.cos(angle) + _MOON_OFFSET - np.abs(t0), radius * np.sin(angle) + t1], axis=1
    )
    # The uniform draw is never exactly on an edge, so the scores are finite.
    noise = np.stack(
        [ndtri(angle / math.pi + 0.5), (radius - _MOON_RADIUS_MEAN) / _MOON_RADIUS_STD], axis=1
    )
    return x, noise


_SLCP_N_DRAWS = 4
_SLCP_JITTER = 1e-6  # added to the covariance diagonal, as in sbibm


def slcp_moments(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (n, 2) and covariance (n, 2, 2) of one SLCP draw.

    Mean ``(theta0, theta1)``; standard deviations ``theta2**2`` and ``theta3**2``; correlation
    ``tanh(theta4)``; 1e-6 on the diagonal keeps the covariance positive definite.
    """
    s1 = theta[:, 2] ** 2
    s2 = theta[:, 3] ** 2
    rho = np.tanh(theta[:, 4])
    cov = np.empty((theta.shape[0], 2, 2))
    cov[:, 0, 0] = s1**2 + _SLCP_JITTER
    cov[:, 1, 1] = s2**2 + _SLCP_JITTER
    cov[:, 0, 1] = cov[:, 1, 0] = rho * s1 * s2
    return theta[:, :2].copy(), cov


def _slcp(theta: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """SLCP ("simple likelihood, complex posterior"): four i.i.d. 2-D Gaussian draws, flattened
    draw by draw into 8 values; see :func:`slcp_moments`. Noise (n, 8): the standard normals
    that the Cholesky factor maps to the four draws, in the order of x."""
    mean, cov = slcp_moments(theta)
    # Cholesky factor of a 2x2 covariance, written out.
    l00 = np.sqrt(cov[:, 0, 0])
    l10 = cov[:, 1, 0] / l00
    l11 = np.sqrt(cov[:, 1, 1] - l10**2)
    eps = rng.standard_normal((theta.shape[0], _SLCP_N_DRAWS, 2))
    x0 = mean[:, None, 0] + l00[:, None] * eps[..., 0]
    x1 = mean[:, None, 1] + l10[:, None] * eps[..., 0] + l11[:, None] * eps[..., 1]
    x = np.stack([x0, x1], axis=-1).reshape(theta.shape[0], 2 * _SLCP_N_DRAWS)
    return x, eps.reshape(theta.shape[0], 2 * _SLCP_N_DRAWS)


_GAUSSIAN_LINEAR_DIM = 10
_GAUSSIAN_LINEAR_PRIOR_VAR = 0.1
_GAUSSIAN_LINEAR_NOISE_VAR = 0.1


def _gaussian_linear(theta: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian linear: x ~ N(theta, 0.1 I) in 10 dimensions (variance 0.1, not std). Noise (n,
    10): the standard normals ``eps`` of ``x = theta + sqrt(0.1) eps``."""
    eps = rng.standard_normal(theta.shape)
    return theta + math.sqrt(_GAUSSIAN_LINEAR_NOISE_VAR) * eps, eps


def gaussian_linear_posterior(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact posterior of gaussian_linear: mean (dim,) and variance (dim,) for one x (dim,)."""
    precision = 1.0 / _GAUSSIAN_LINEAR_PRIOR_VAR + 1.0 / _GAUSSIAN_LINEAR_NOISE_VAR
    var = np.full(_GAUSSIAN_LINEAR_DIM, 1.0 / precision)
    return var * np.asarray(x) / _GAUSSIAN_LINEAR_NOISE_VAR, var


TASKS: dict[str, Task] = {
    "two_moons": Task(
        name="two_moons",
        dim_theta=2,
        dim_x=2,
        prior_kind="uniform",
        prior_low=(-1.0, -1.0),
        prior_high=(1.0, 1.0),
        simulator=_two_moons,
        noise_dim=2,
    ),
    "slcp": Task(
        name="slcp",
        dim_theta=5,
        dim_x=2 * _SLCP_N_DRAWS,
        prior_kind="uniform",
        prior_low=(-3.0,) * 5,
        prior_high=(3.0,) * 5,
        simulator=_slcp,
        noise_dim=2 * _SLCP_N_DRAWS,
    ),
    "gaussian_linear": Task(
        name="gaussian_linear",
        dim_theta=_GAUSSIAN_LINEAR_DIM,
        dim_x=_GAUSSIAN_LINEAR_DIM,
        prior_kind="gaussian",
        prior_loc=(0.0,) * _GAUSSIAN_LINEAR_DIM,
        prior_var=(_GAUSSIAN_LINEAR_PRIOR_VAR,) * _GAUSSIAN_LINEAR_DIM,
        simulator=_gaussian_linear,
        noise_dim=_GAUSSIAN_LINEAR_DIM,
    ),
}


# ---------------------------------------------------------------------------------------------
# Reference data from the sbibm wheel


def cache_dir() -> Path:
    """Where the sbibm wheel is kept: ``$ACOUSTIC_INV_CACHE/sbibm`` or ``~/.cache/acoustic-inv/sbibm``."""
    root = os.environ.get("ACOUSTIC_INV_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "acoustic-inv"
    return base / "sbibm"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sbibm_wheel(directory: Path | None = None) -> Path:
    """Returns the path of the cached sbibm wheel, downloading it with pip on first use.

    Args:
        directory: Cache directory; :func:`cache_dir` by default.

    Returns:
        Path of the wheel, whose sha256 has been checked.

    Raises:
        RuntimeError: If pip cannot download the wheel or the file's checksum is wrong.
    """
    directory = cache_dir() if directory is None else directory
    wheel = directory / SBIBM_WHEEL
    if not wheel.exists():
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            command = [
                sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                "--disable-pip-version-check", "-q", f"sbibm=={SBIBM_VERSION}", "-d", tmp,
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            fetched = Path(tmp) / SBIBM_WHEEL
            if done.returncode != 0 or not fetched.exists():
                raise RuntimeError(
                    f"could not download sbibm=={SBIBM_VERSION} with pip into {directory}: "
                    f"{done.stderr.strip()[-500:]}"
                )
            # Same-directory rename: a concurrent reader never sees a half-written wheel.
            os.replace(fetched, wheel)
    found = _sha256(wheel)
    if found != SBIBM_WHEEL_SHA256:
        raise RuntimeError(
            f"{wheel}: sha256 {found} is not the published {SBIBM_WHEEL_SHA256}; delete the file "
            "and run again"
        )
    return wheel


@dataclass(frozen=True)
class Reference:
    """One sbibm observation with its reference posterior.

    Attributes:
        task: Task name.
        index: sbibm observation number, 1 to 10.
        x: The observation, shape (dim_x,).
        theta_true: Parameters that generated it, shape (dim_theta,).
        samples: Reference posterior samples, shape (10000, dim_theta).
    """

    task: str
    index: int
    x: np.ndarray
    theta_true: np.ndarray
    samples: np.ndarray


def _read_csv(archive: zipfile.ZipFile, member: str) -> np.ndarray:
    raw = archive.read(member)
    if member.endswith(".bz2"):
        raw = bz2.decompress(raw)
    return np.loadtxt(io.BytesIO(raw), delimiter=",", skiprows=1, ndmin=2)


def load_reference(task: str, index: int, wheel: Path | None = None) -> Reference:
    """Reads observation ``index`` (1 to 10) of a task and its reference posterior samples.

    Args:
        task: Task name, a key of :data:`TASKS`.
        index: sbibm observation number, 1 to 10.
        wheel: Path of the sbibm wheel; fetched into the cache by default.

    Returns:
        The observation, its true parameters and 10 000 reference posterior samples.

    Raises:
        KeyError: For an unknown task.
        ValueError: For an index outside 1 to 10.
    """
    spec = TASKS[task]
    if not 1 <= index <= N_OBSERVATIONS:
        raise ValueError(f"index: expected 1 to {N_OBSERVATIONS}, got {index}")
    wheel = fetch_sbibm_wheel() if wheel is None else wheel
    folder = f"sbibm/tasks/{task}/files/num_observation_{index}"
    with zipfile.ZipFile(wheel) as archive:
        x = _read_csv(archive, f"{folder}/observation.csv")[0]
        theta_true = _read_csv(archive, f"{folder}/true_parameters.csv")[0]
        samples = _read_csv(archive, f"{folder}/reference_posterior_samples.csv.bz2")
    if x.shape != (spec.dim_x,) or samples.shape[1:] != (spec.dim_theta,):
        raise ValueError(
            f"{wheel}:{folder}: shapes x {x.shape}, samples {samples.shape} do not match task "
            f"{task} (dim_x {spec.dim_x}, dim_theta {spec.dim_theta})"
        )
    return Reference(task=task, index=index, x=x, theta_true=theta_true, samples=samples)


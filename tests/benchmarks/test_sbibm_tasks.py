"""benchmarks/_tasks.py: each sbibm simulator's noise realization determines its x.

The padded INN of ``benchmarks/sbibm.py`` carries these noise variables on its parameter side, which
is only right if ``x`` is a deterministic function of ``theta`` and them, and if asking for them does
not change the simulation set.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import ndtr


@pytest.fixture(scope="module")
def tasks():
    """benchmarks/_tasks.py, imported by path (benchmarks/ is not a package)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "_tasks.py"
    spec = importlib.util.spec_from_file_location("_sbibm_tasks_noise", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def rebuild(tasks, name: str, theta: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """x from theta and the noise realization, written independently of the simulators."""
    if name == "gaussian_linear":
        return theta + math.sqrt(0.1) * noise
    if name == "two_moons":
        angle = math.pi * (ndtr(noise[:, 0]) - 0.5)
        radius = 0.1 + 0.01 * noise[:, 1]
        t0 = (theta[:, 0] + theta[:, 1]) / math.sqrt(2.0)
        t1 = (theta[:, 1] - theta[:, 0]) / math.sqrt(2.0)
        return np.stack([radius * np.cos(angle) + 0.25 - np.abs(t0), radius * np.sin(angle) + t1], axis=1)
    mean, cov = tasks.slcp_moments(theta)
    chol = np.linalg.cholesky(cov)
    eps = noise.reshape(len(theta), 4, 2)
    return (mean[:, None, :] + np.einsum("nij,nkj->nki", chol, eps)).reshape(len(theta), 8)


@pytest.mark.parametrize("name", ["two_moons", "slcp", "gaussian_linear"])
def test_noise_realization_determines_x_and_keeps_the_simulation_set(tasks, name: str) -> None:
    task = tasks.TASKS[name]
    theta = task.sample_prior(2000, np.random.default_rng(0))
    x, noise = task.simulate_with_noise(theta, np.random.default_rng(1))
    assert noise.shape == (2000, task.noise_dim) and np.all(np.isfinite(noise))
    np.testing.assert_array_equal(x, task.simulate(theta, np.random.default_rng(1)))
    np.testing.assert_allclose(rebuild(tasks, name, theta, noise), x, rtol=1e-9, atol=1e-9)
    # Standard normals, as documented (each column's mean and spread within 5 standard errors).
    assert np.all(np.abs(noise.mean(axis=0)) < 5 / math.sqrt(2000))
    assert np.all(np.abs(noise.std(axis=0) - 1.0) < 5 / math.sqrt(2 * 2000))

"""Calibration and accuracy of a trained posterior on held-out simulations.

For each test simulation (theta_i, x_i), drawn from the prior, the model draws posterior samples given
x_i. Over many simulations a calibrated amortized posterior satisfies:

- expected coverage: the central credible interval at level q holds the truth in a fraction q of the
  simulations, for every q (per parameter); the calibration error is max_q |coverage(q) - q|;
- simulation-based calibration (Talts et al. 2018, "Validating Bayesian inference algorithms with
  simulation-based calibration"): the rank of the truth among the draws is uniform (chi-square test);
- TARP (Lemos et al. 2023, "Sampling-based accuracy testing of posterior estimators for general
  inference"): the joint expected-coverage curve lies on the diagonal;
- posterior z-scores have mean 0 and variance 1, and posterior contraction (Betancourt 2018, "Calibrating
  model-based inferences and decisions") says how much each parameter is learned;
- the RMSE of the posterior mean measures accuracy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from acoustic_inv import diagnostics
from acoustic_inv.errors import DataError

DEFAULT_LEVELS = tuple(np.round(np.arange(0.05, 0.951, 0.05), 2))


@dataclass
class Evaluation:
    """The result of :func:`evaluate`.

    Attributes:
        param_names: Parameter names, (d,).
        param_units: Their units, (d,).
        levels: Credible levels, (n_level,).
        coverage: Expected coverage of central intervals, (n_level, d).
        calibration_error: max over levels of |coverage - level|, (d,).
        sbc_ranks: Rank of each truth among the draws, (n_obs, d).
        sbc_p_value: Chi-square uniformity p-value of the ranks, (d,).
        tarp_alpha: TARP credibility levels, (n_alpha,).
        tarp_ecp: TARP expected coverage, (n_alpha,).
        tarp_atc: TARP area-to-curve statistic (0 when calibrated).
        contraction: Mean posterior contraction, (d,).
        z_mean: Mean posterior z-score, (d,).
        z_std: Standard deviation of the z-scores, (d,).
        rmse: RMSE of the posterior mean, (d,), in parameter units.
        prior_std: Standard deviation of the test parameters, (d,) (the RMSE of guessing the mean).
        n_obs: Number of test simulations.
        n_draws: Posterior draws per simulation.
        seconds_per_posterior: Wall time per posterior (sampling), s.
        meta: Model and data provenance.
    """

    param_names: list[str]
    param_units: list[str]
    levels: np.ndarray
    coverage: np.ndarray
    calibration_error: np.ndarray
    sbc_ranks: np.ndarray
    sbc_p_value: np.ndarray
    tarp_alpha: np.ndarray
    tarp_ecp: np.ndarray
    tarp_atc: float
    contraction: np.ndarray
    z_mean: np.ndarray
    z_std: np.ndarray
    rmse: np.ndarray
    prior_std: np.ndarray
    n_obs: int
    n_draws: int
    seconds_per_posterior: float
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values: one entry per parameter, plus the joint TARP result."""
        params = {}
        for j, name in enumerate(self.param_names):
            params[name] = {
                "units": self.param_units[j],
                "calibration_error": float(self.calibration_error[j]),
                "coverage": [float(c) for c in self.coverage[:, j]],
                "sbc_p_value": float(self.sbc_p_value[j]),
                "contraction": float(self.contraction[j]),
                "z_mean": float(self.z_mean[j]),
                "z_std": float(self.z_std[j]),
                "rmse": float(self.rmse[j]),
                "prior_std": float(self.prior_std[j]),
            }
        return {
            "levels": [float(q) for q in self.levels],
            "parameters": params,
            "max_calibration_error": float(self.calibration_error.max()),
            "tarp": {"atc": float(self.tarp_atc), "alpha": self.tarp_alpha.tolist(), "ecp": self.tarp_ecp.tolist()},
            "n_obs": self.n_obs,
            "n_draws": self.n_draws,
            "seconds_per_posterior": self.seconds_per_posterior,
            "meta": self.meta,
        }

    def table(self) -> str:
        """A text table, one row per parameter."""
        head = ["parameter", "units", "cal. error", "SBC p", "contraction", "z mean", "z std", "RMSE", "prior std"]
        rows = [[n, u, f"{c:.3f}", f"{p:.3f}", f"{k:.2f}", f"{zm:+.2f}", f"{zs:.2f}", f"{r:.4g}", f"{s:.4g}"]
                for n, u, c, p, k, zm, zs, r, s in zip(
                    self.param_names, self.param_units, self.calibration_error, self.sbc_p_value,
                    self.contraction, self.z_mean, self.z_std, self.rmse, self.prior_std)]
        widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        lines.append(f"TARP ATC {self.tarp_atc:+.3f} (0 when calibrated); {self.n_obs} simulations x "
                     f"{self.n_draws} draws; {self.seconds_per_posterior * 1e3:.1f} ms per posterior")
        return "\n".join(lines)


def evaluate_samples(samples: np.ndarray, truths: np.ndarray, param_names: Sequence[str],
                     param_units: Sequence[str], levels: Sequence[float] = DEFAULT_LEVELS,
                     seed: int = 0, seconds_per_posterior: float = float("nan"),
                     meta: dict[str, Any] | None = None) -> Evaluation:
    """All calibration and accuracy statistics of posterior draws against the truths.

    Args:
        samples: Posterior draws, shape (n_obs, n_draws, d), parameter units.
        truths: True parameters, shape (n_obs, d), parameter units.
        param_names: Names, (d,).
        param_units: Units, (d,).
        levels: Credible levels in (0, 1).
        seed: Seed for rank tie-breaking and TARP reference points.
        seconds_per_posterior: Sampling time per observation, s (reported only).
        meta: Provenance to carry into the result.
    """
    samples = np.asarray(samples, dtype=float)
    truths = np.asarray(truths, dtype=float)
    if samples.ndim != 3 or truths.shape != (samples.shape[0], samples.shape[2]):
        raise ValueError(f"samples (n_obs, n_draws, d) and truths (n_obs, d) do not match: {samples.shape}, "
                         f"{truths.shape}")
    levels_arr = np.asarray(levels, dtype=float)
    coverage = diagnostics.expected_coverage(samples, truths, levels_arr)
    ranks = diagnostics.sbc_ranks(samples, truths, seed=seed)
    sbc = diagnostics.sbc_uniformity(ranks, samples.shape[1])
    tarp = diagnostics.tarp(samples, truths, seed=seed)
    prior_var = truths.var(axis=0, ddof=1)
    if np.any(prior_var <= 0):
        raise DataError("the test parameters do not vary: contraction needs several distinct test simulations")
    z = diagnostics.z_scores(samples, truths)
    contraction = diagnostics.posterior_contraction(samples, prior_var)
    mean = samples.mean(axis=1)
    return Evaluation(
        param_names=list(param_names), param_units=list(param_units), levels=levels_arr,
        coverage=coverage, calibration_error=np.max(np.abs(coverage - levels_arr[:, None]), axis=0),
        sbc_ranks=ranks, sbc_p_value=np.asarray(sbc.p_value, dtype=float),
        tarp_alpha=np.asarray(tarp.alpha), tarp_ecp=np.asarray(tarp.ecp), tarp_atc=float(tarp.atc),
        contraction=contraction.mean(axis=0), z_mean=z.mean(axis=0), z_std=z.std(axis=0, ddof=1),
        rmse=np.sqrt(np.mean((mean - truths) ** 2, axis=0)), prior_std=np.sqrt(prior_var),
        n_obs=int(samples.shape[0]), n_draws=int(samples.shape[1]),
        seconds_per_posterior=float(seconds_per_posterior), meta=dict(meta or {}),
    )


def evaluate(model_path: str | Path, data_path: str | Path, n_obs: int = 1000, n_draws: int = 1000,
             levels: Sequence[float] = DEFAULT_LEVELS, seed: int = 0, batch: int = 100) -> Evaluation:
    """Evaluates a model file on the first ``n_obs`` simulations of a test dataset.

    Args:
        model_path: Model file (``acoustic-inv train`` output).
        data_path: Test dataset directory (held out from training, e.g. from ``dataset split``).
        n_obs: Number of test simulations (all if fewer).
        n_draws: Posterior draws per simulation.
        levels: Credible levels.
        seed: Seed of the posterior draws and of the statistics.
        batch: Observations sampled per network call.

    Raises:
        DataError: when the model and the dataset's parameters or features differ.
    """
    import torch

    from acoustic_inv.checkpoint import load_model
    from acoustic_inv.datasets import open_dataset

    model = load_model(model_path)
    ds = open_dataset(data_path)
    names = [str(p) for p in ds["param"].values]
    if names != list(model.param_names):
        raise DataError(f"{data_path}: parameters {names} differ from the model's {list(model.param_names)} "
                        f"({model_path})")
    n_features = int(ds.sizes["feature"])
    if n_features != model.n_features:
        raise DataError(f"{data_path}: {n_features} features per sample, but the model {model_path} takes "
                        f"{model.n_features}")
    n = min(int(n_obs), int(ds.sizes["sample"]))
    if n < 2:
        raise DataError(f"{data_path}: needs at least 2 test simulations, found {n}")
    x = np.asarray(ds["x"].isel(sample=slice(0, n)).values, dtype=np.float64)
    theta = np.asarray(ds["theta"].isel(sample=slice(0, n)).transpose("sample", "param").values, dtype=float)
    samples = np.empty((n, n_draws, len(names)))
    start = time.perf_counter()
    for i in range(0, n, batch):
        draws = model.sample(torch.as_tensor(x[i:i + batch]), n_draws, seed=seed + i)  # (n_draws, b, d)
        samples[i:i + batch] = draws.numpy().transpose(1, 0, 2)
    seconds = (time.perf_counter() - start) / n
    meta = {"model": str(model_path), "data": str(data_path), "architecture": model.architecture,
            "seed": seed}
    return evaluate_samples(samples, theta, names, list(model.param_units), levels, seed, seconds, meta)

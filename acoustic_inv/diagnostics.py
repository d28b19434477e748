"""Posterior-quality metrics: two-sample tests, coverage, calibration and contraction.

Everything here works on plain numpy arrays of samples, so the same code scores our networks, sbi's
estimators and reference samplers alike. Shapes follow one convention:

- ``posterior_samples``: ``(n_obs, n_draws, d)``, ``n_draws`` posterior draws for each of ``n_obs``
  observations, in the units of the parameters;
- ``truths``: ``(n_obs, d)``, the parameters that generated each observation, same units.

References:
    Lopez-Paz & Oquab (2017), "Revisiting classifier two-sample tests".
    Lueckmann et al. (2021), "Benchmarking simulation-based inference" (the C2ST protocol).
    Talts et al. (2018), "Validating Bayesian inference algorithms with simulation-based calibration".
    Lemos et al. (2023), "Sampling-based accuracy testing of posterior estimators for general
    inference" (TARP).
    Betancourt (2018), "Calibrating model-based inferences and decisions" (z-score, contraction).
    Deistler et al. (2022), "Truncated proposals for scalable and hassle-free simulation-based
    inference" (expected coverage of highest-density regions from log-density ranks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy import stats
from scipy.integrate import trapezoid as _trapezoid

from acoustic_inv.errors import UserError

__all__ = [
    "SBCTest",
    "TarpResult",
    "c2st",
    "expected_coverage",
    "hpd_coverage",
    "posterior_contraction",
    "sbc_ranks",
    "sbc_uniformity",
    "tarp",
    "wasserstein",
    "z_scores",
]


# ---------------------------------------------------------------------------------------------
# Input checks


def _as_2d(name: str, value: np.ndarray) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{name}: expected a non-empty 2-D array (n, d), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return array


def _samples_and_truths(
    posterior_samples: np.ndarray, truths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    samples = np.asarray(posterior_samples, dtype=np.float64)
    theta = np.asarray(truths, dtype=np.float64)
    if samples.ndim != 3 or min(samples.shape) < 1:
        raise ValueError(
            "posterior_samples: expected a non-empty 3-D array (n_obs, n_draws, d), "
            f"got shape {samples.shape}"
        )
    if theta.shape != (samples.shape[0], samples.shape[2]):
        raise ValueError(
            f"truths: expected shape (n_obs, d) = {(samples.shape[0], samples.shape[2])} to match "
            f"posterior_samples {samples.shape}, got {theta.shape}"
        )
    if not (np.all(np.isfinite(samples)) and np.all(np.isfinite(theta))):
        raise ValueError("posterior_samples / truths: contain NaN or infinite values")
    return samples, theta


def _levels(levels: np.ndarray | list[float] | float) -> np.ndarray:
    array = np.atleast_1d(np.asarray(levels, dtype=np.float64))
    if array.ndim != 1 or np.any((array <= 0.0) | (array >= 1.0)):
        raise ValueError(f"levels: expected credibility levels strictly in (0, 1), got {levels!r}")
    return array


# ---------------------------------------------------------------------------------------------
# Classifier two-sample test


def c2st(
    a: np.ndarray,
    b: np.ndarray,
    seed: int = 0,
    n_folds: int = 5,
    *,
    classifier: Literal["torch", "sklearn"] = "torch",
    z_score: bool = True,
    early_stopping: bool = True,
    max_epochs: int = 1000,
) -> float:
    """Classifier two-sample test: cross-validated accuracy of telling ``a`` from ``b``.

    Follows the protocol of Lueckmann et al. (2021): both samples are z-scored with the mean and
    standard deviation of ``a``; a multilayer perceptron with two hidden layers of ``10 * d`` ReLU
    units is trained with Adam (learning rate 1e-3, batches of 200, L2 penalty 1e-4); the score is
    the mean held-out accuracy over ``n_folds`` shuffled folds of the pooled data. 0.5 means
    indistinguishable, 1.0 perfectly separable. Samples of equal size make 0.5 the chance level.

    sbibm (scikit-learn's ``MLPClassifier``) trains until the training loss stops improving by 1e-4
    for 10 epochs. On two nearly identical samples the classifier keeps memorising and that rule
    fires late: two 10-D samples of 10 000 take about 3 minutes on 2 cores. By default the torch
    classifier stops on a validation split instead (``early_stopping``): 10% of each training
    fold, stop after 10 epochs without a lower validation loss by 1e-4, keep the best weights; the
    same test takes seconds. The two rules give different numbers, and either can be the higher:
    for N(0, I) against N(0, 1.05^2 I) in 10-D (10 000 each) early stopping scores 0.531 where
    sbibm's over-fitted classifier scores 0.509 (torch with ``early_stopping=False``: 0.510), while
    on a clearly wrong two-moons posterior (1 000 each) sbibm's longer training scored 0.982
    against 0.954, and on the nine two_moons posteriors of ``benchmarks/losses.md`` (NPE, cINN, INN at
    10^4 simulations) sbibm's rule scored 0.001-0.054 higher. Compare against published sbibm numbers only with ``classifier="sklearn"`` or
    ``early_stopping=False``, and compare methods only under one rule.

    Args:
        a: First sample, shape (n, d), any units (z-scored internally).
        b: Second sample, shape (m, d), same units as ``a``.
        seed: Seed of the fold split and of the classifier's initialisation and batches; the result
            is deterministic for a seed on a given machine.
        n_folds: Number of cross-validation folds, at least 2.
        classifier: ``"torch"`` (this module's MLP, always available) or ``"sklearn"``
            (scikit-learn's ``MLPClassifier`` with sbibm's settings, for numbers comparable with
            the published benchmark; needs scikit-learn).
        z_score: Whether to standardise both samples with the moments of ``a``.
        early_stopping: ``"torch"`` only: stop on a validation split (see above) rather than on
            the training loss.
        max_epochs: Upper bound on training epochs per fold (``"torch"`` only; scikit-learn uses
            sbibm's 10 000 iterations).

    Returns:
        Mean held-out classification accuracy, in [0, 1].

    Raises:
        ValueError: If the shapes disagree, a sample holds non-finite values or an option is out of
            range.
        UserError: If ``classifier="sklearn"`` and scikit-learn is not installed.
    """
    xa = _as_2d("a", a)
    xb = _as_2d("b", b)
    if xa.shape[1] != xb.shape[1]:
        raise ValueError(f"a, b: expected the same dimension d, got {xa.shape[1]} and {xb.shape[1]}")
    if n_folds < 2 or n_folds > xa.shape[0] + xb.shape[0]:
        raise ValueError(f"n_folds: expected 2 <= n_folds <= n + m, got {n_folds}")
    if max_epochs < 1:
        raise ValueError(f"max_epochs: expected >= 1, got {max_epochs}")
    if z_score:
        mean = xa.mean(axis=0)
        std = xa.std(axis=0)
        # A constant coordinate in ``a`` would divide by zero; leave its scale alone.
        std = np.where(std > 0.0, std, 1.0)
        xa = (xa - mean) / std
        xb = (xb - mean) / std
    data = np.concatenate([xa, xb])
    target = np.concatenate([np.zeros(len(xa)), np.ones(len(xb))])
    folds = np.array_split(np.random.default_rng(seed).permutation(len(data)), n_folds)

    if classifier == "sklearn":
        return _c2st_sklearn(data, target, folds, seed)
    if classifier != "torch":
        raise ValueError(f"classifier: expected 'torch' or 'sklearn', got {classifier!r}")
    scores = []
    # Tiny matrix products: extra threads only add synchronisation, which on a busy machine made
    # the same test 30 times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            for k, test_index in enumerate(folds):
                train_index = np.concatenate([f for j, f in enumerate(folds) if j != k])
                scores.append(
                    _mlp_fold_accuracy(
                        data[train_index], target[train_index], data[test_index],
                        target[test_index], seed=seed * 1000 + k, max_epochs=max_epochs,
                        early_stopping=early_stopping,
                    )
                )
    finally:
        torch.set_num_threads(threads)
    return float(np.mean(scores))


def _c2st_sklearn(
    data: np.ndarray, target: np.ndarray, folds: list[np.ndarray], seed: int
) -> float:
    try:
        from sklearn.neural_network import MLPClassifier
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise UserError(
            "c2st(classifier='sklearn') needs scikit-learn (installed with the 'bench' extra); "
            "use classifier='torch' instead"
        ) from error
    from threadpoolctl import threadpool_limits

    d = data.shape[1]
    scores = []
    # One BLAS thread, for the reason given in c2st.
    with threadpool_limits(limits=1):
        for k, test_index in enumerate(folds):
            train_index = np.concatenate([f for j, f in enumerate(folds) if j != k])
            model = MLPClassifier(
                activation="relu",
                hidden_layer_sizes=(10 * d, 10 * d),
                max_iter=10000,
                solver="adam",
                random_state=seed,
            )
            model.fit(data[train_index], target[train_index])
            scores.append(model.score(data[test_index], target[test_index]))
    return float(np.mean(scores))


def _mlp_fold_accuracy(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    seed: int,
    max_epochs: int,
    early_stopping: bool,
) -> float:
    """Trains one MLP classifier on a fold and returns its held-out accuracy."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    d = x_train.shape[1]
    width = 10 * d
    net = torch.nn.Sequential(
        torch.nn.Linear(d, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, 1),
    ).double()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    weights = [m.weight for m in net if isinstance(m, torch.nn.Linear)]
    xt = torch.from_numpy(x_train)
    yt = torch.from_numpy(y_train)
    if early_stopping and len(xt) >= 20:
        order = torch.randperm(len(xt), generator=generator)
        n_val = len(xt) // 10
        xv, yv = xt[order[:n_val]], yt[order[:n_val]]
        xt, yt = xt[order[n_val:]], yt[order[n_val:]]
    else:
        early_stopping = False
    n = len(xt)
    batch = min(200, n)
    l2 = 1e-4
    tol, patience = 1e-4, 10
    best, stale = math.inf, 0
    best_state = None
    for _ in range(max_epochs):
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, batch):
            index = order[start : start + batch]
            logits = net(xt[index]).squeeze(-1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yt[index])
            penalty = 0.5 * l2 * sum((w * w).sum() for w in weights) / len(index)
            optimiser.zero_grad(set_to_none=True)
            (loss + penalty).backward()
            optimiser.step()
            total += loss.item() * len(index)
        if early_stopping:
            with torch.no_grad():
                score = torch.nn.functional.binary_cross_entropy_with_logits(
                    net(xv).squeeze(-1), yv
                ).item()
        else:
            # scikit-learn's MLPClassifier rule, on the training loss.
            score = total / n
        if score > best - tol:
            stale += 1
            if stale >= patience:
                break
        else:
            stale = 0
            if early_stopping:
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
        best = min(best, score)
    if best_state is not None:
        net.load_state_dict(best_state)
    with torch.no_grad():
        predicted = net(torch.from_numpy(x_test)).squeeze(-1) > 0.0
    return float((predicted.numpy() == (y_test > 0.5)).mean())


# ---------------------------------------------------------------------------------------------
# Coverage


def expected_coverage(
    posterior_samples: np.ndarray,
    truths: np.ndarray,
    levels: np.ndarray | list[float],
    kind: Literal["central", "shortest"] = "central",
) -> np.ndarray:
    """Per-parameter empirical coverage of marginal credible intervals.

    For each observation and parameter, the interval holding a fraction ``level`` of the marginal
    posterior draws is formed and the fraction of observations whose true value falls inside it is
    returned. A calibrated posterior gives coverage equal to the level, within binomial error
    ``sqrt(level * (1 - level) / n_obs)``; coverage below the level means over-confidence.

    Args:
        posterior_samples: Posterior draws, shape (n_obs, n_draws, d), parameter units.
        truths: True parameters, shape (n_obs, d), parameter units.
        levels: Credibility levels in (0, 1), shape (n_levels,).
        kind: ``"central"``: equal-tailed interval between the ``(1 - level) / 2`` and
            ``(1 + level) / 2`` sample quantiles. ``"shortest"``: the narrowest window of
            ``ceil(level * n_draws)`` sorted draws, the marginal highest-density interval of a
            unimodal posterior. Being the narrowest of many windows, it is biased narrow for few
            draws (coverage about 0.03 low at ``level`` 0.5 with 400 draws); use thousands.

    Returns:
        Coverage fractions, shape (n_levels, d).

    Raises:
        ValueError: On inconsistent shapes, non-finite values, levels outside (0, 1) or an unknown
            ``kind``.
    """
    samples, theta = _samples_and_truths(posterior_samples, truths)
    levels_ = _levels(levels)
    if kind == "central":
        lower = np.quantile(samples, (1.0 - levels_) / 2.0, axis=1)  # (n_levels, n_obs, d)
        upper = np.quantile(samples, (1.0 + levels_) / 2.0, axis=1)
    elif kind == "shortest":
        ordered = np.sort(samples, axis=1)
        n_draws = ordered.shape[1]
        lower = np.empty((len(levels_),) + theta.shape)
        upper = np.empty_like(lower)
        for i, level in enumerate(levels_):
            k = max(1, math.ceil(level * n_draws))
            widths = ordered[:, k - 1 :, :] - ordered[:, : n_draws - k + 1, :]
            start = np.argmin(widths, axis=1)[:, None, :]
            lower[i] = np.take_along_axis(ordered, start, axis=1)[:, 0, :]
            upper[i] = np.take_along_axis(ordered, start + k - 1, axis=1)[:, 0, :]
    else:
        raise ValueError(f"kind: expected 'central' or 'shortest', got {kind!r}")
    inside = (lower <= theta[None]) & (theta[None] <= upper)
    return inside.mean(axis=1)


def hpd_coverage(
    log_prob_samples: np.ndarray,
    log_prob_truths: np.ndarray,
    levels: np.ndarray | list[float],
) -> np.ndarray:
    """Empirical coverage of joint highest-posterior-density regions, from log-density ranks.

    The true parameter lies in the ``level`` HPD region when fewer than a fraction ``level`` of the
    posterior draws have a higher posterior density than it (Deistler et al. 2022). Needs the
    estimator's log-density at its own draws and at the truth.

    Args:
        log_prob_samples: Posterior log-density at each draw, shape (n_obs, n_draws).
        log_prob_truths: Posterior log-density at the true parameter, shape (n_obs,).
        levels: Credibility levels in (0, 1), shape (n_levels,).

    Returns:
        Coverage fractions, shape (n_levels,).

    Raises:
        ValueError: On inconsistent shapes or levels outside (0, 1).
    """
    lp = np.asarray(log_prob_samples, dtype=np.float64)
    lt = np.asarray(log_prob_truths, dtype=np.float64)
    if lp.ndim != 2 or lt.shape != (lp.shape[0],):
        raise ValueError(
            "log_prob_samples, log_prob_truths: expected shapes (n_obs, n_draws) and (n_obs,), "
            f"got {lp.shape} and {lt.shape}"
        )
    levels_ = _levels(levels)
    # NaN log-densities (a draw outside the support) count as less dense than the truth.
    higher = np.mean(np.nan_to_num(lp, nan=-np.inf) > lt[:, None], axis=1)  # (n_obs,)
    return (higher[None, :] < levels_[:, None]).mean(axis=1)


# ---------------------------------------------------------------------------------------------
# Simulation-based calibration


@dataclass(frozen=True)
class SBCTest:
    """Chi-square test of uniformity of SBC ranks.

    Attributes:
        chi2: Chi-square statistic per parameter, shape (d,).
        p_value: Its p-value per parameter, shape (d,); small means the ranks are not uniform.
        n_bins: Number of rank bins.
        dof: Degrees of freedom of the test (``n_bins - 1``).
        counts: Rank histogram, shape (n_bins, d).
        expected: Expected count per bin under uniformity, shape (n_bins,).
    """

    chi2: np.ndarray
    p_value: np.ndarray
    n_bins: int
    dof: int
    counts: np.ndarray
    expected: np.ndarray


def sbc_ranks(posterior_samples: np.ndarray, truths: np.ndarray, seed: int = 0) -> np.ndarray:
    """Simulation-based calibration ranks (Talts et al. 2018).

    The rank of the truth among its ``n_draws`` posterior draws, per parameter. If the truths are
    drawn from the prior, the observations from the simulator, and the posterior is exact, each rank
    is uniform on ``{0, ..., n_draws}``. Ties (discrete parameters, duplicated draws) are broken at
    random so that this stays true. Draws should be roughly independent (thin MCMC chains).

    Args:
        posterior_samples: Posterior draws, shape (n_obs, n_draws, d), parameter units.
        truths: True parameters, shape (n_obs, d), parameter units.
        seed: Seed of the tie-breaking.

    Returns:
        Integer ranks in ``[0, n_draws]``, shape (n_obs, d).

    Raises:
        ValueError: On inconsistent shapes or non-finite values.
    """
    samples, theta = _samples_and_truths(posterior_samples, truths)
    below = np.sum(samples < theta[:, None, :], axis=1)
    ties = np.sum(samples == theta[:, None, :], axis=1)
    rng = np.random.default_rng(seed)
    return below + rng.integers(0, ties + 1)


def sbc_uniformity(ranks: np.ndarray, n_draws: int, n_bins: int | None = None) -> SBCTest:
    """Pearson chi-square test that SBC ranks are uniform on ``{0, ..., n_draws}``.

    The ``n_draws + 1`` rank values are pooled into ``n_bins`` contiguous bins; when ``n_bins`` does
    not divide ``n_draws + 1`` the expected counts follow the unequal bin widths.

    Args:
        ranks: Ranks from :func:`sbc_ranks`, shape (n_obs, d).
        n_draws: Number of posterior draws the ranks were computed from.
        n_bins: Number of bins; by default ``min(20, n_draws + 1, max(2, n_obs // 10))`` so that
            about ten ranks or more fall in each bin.

    Returns:
        The test per parameter.

    Raises:
        ValueError: On ranks outside ``[0, n_draws]`` or a bad ``n_bins``.
    """
    r = np.asarray(ranks)
    if r.ndim != 2:
        raise ValueError(f"ranks: expected shape (n_obs, d), got {r.shape}")
    if n_draws < 1 or r.min() < 0 or r.max() > n_draws:
        raise ValueError(f"ranks: expected integers in [0, n_draws={n_draws}], got [{r.min()}, {r.max()}]")
    n_values = n_draws + 1
    if n_bins is None:
        n_bins = min(20, n_values, max(2, r.shape[0] // 10))
    if not 2 <= n_bins <= n_values:
        raise ValueError(f"n_bins: expected 2 <= n_bins <= n_draws + 1 = {n_values}, got {n_bins}")
    bin_of_value = (np.arange(n_values) * n_bins) // n_values
    values_per_bin = np.bincount(bin_of_value, minlength=n_bins)
    expected = r.shape[0] * values_per_bin / n_values
    counts = np.stack(
        [np.bincount(bin_of_value[r[:, j]], minlength=n_bins) for j in range(r.shape[1])], axis=1
    )
    chi2 = np.sum((counts - expected[:, None]) ** 2 / expected[:, None], axis=0)
    dof = n_bins - 1
    return SBCTest(
        chi2=chi2,
        p_value=stats.chi2.sf(chi2, dof),
        n_bins=n_bins,
        dof=dof,
        counts=counts,
        expected=expected,
    )


# ---------------------------------------------------------------------------------------------
# TARP


@dataclass(frozen=True)
class TarpResult:
    """Expected coverage curve of TARP (Lemos et al. 2023).

    Attributes:
        alpha: Credibility levels, shape (n_alpha,), from 0 to 1.
        ecp: Expected coverage probability at each level, shape (n_alpha,); the diagonal
            ``ecp == alpha`` for an accurate posterior.
        atc: Signed area between the curve and the diagonal over ``alpha >= 0.5`` (sbi's "area to
            curve"): about 0 when accurate, negative for over-confident (too narrow) posteriors,
            positive for under-confident (too wide) ones.
        area: Unsigned area between the curve and the diagonal over [0, 1]; 0 when accurate.
        ks_p_value: Kolmogorov-Smirnov p-value of the per-observation coverage values against
            U(0, 1); small means miscalibrated.
        coverage_values: Per-observation coverage value ``f`` (Lemos et al., Algorithm 2), shape
            (n_obs,).
    """

    alpha: np.ndarray
    ecp: np.ndarray
    atc: float
    area: float
    ks_p_value: float
    coverage_values: np.ndarray


def tarp(
    posterior_samples: np.ndarray,
    truths: np.ndarray,
    *,
    references: np.ndarray | None = None,
    normalize: bool = True,
    n_alpha: int = 101,
    seed: int = 0,
) -> TarpResult:
    """Tests of Accuracy with Random Points (Lemos et al. 2023).

    For each observation a random reference point defines balls centred on it; the coverage value
    ``f`` is the fraction of posterior draws closer to the reference than the truth. ``f`` is
    uniform for the exact posterior whatever the references, and its empirical CDF is the expected
    coverage curve. Unlike marginal coverage and SBC this is a joint test, and random references
    make it sensitive to biased posteriors as well as to wrong widths.

    This implementation smooths the count of closer draws by a uniform offset
    (``f = (count + u) / (n_draws + 1)``, ``u ~ U(0, 1)``) so that ``f`` is exactly U(0, 1) for an
    exact sampler rather than a discrete uniform; this removes the ``1 / n_draws`` bias at the
    ends of the curve and makes the Kolmogorov-Smirnov test exact.

    Args:
        posterior_samples: Posterior draws, shape (n_obs, n_draws, d), parameter units.
        truths: True parameters, drawn from the prior, shape (n_obs, d), parameter units.
        references: Reference points, shape (n_obs, d), parameter units; by default drawn uniformly
            in the bounding box of ``truths``.
        normalize: Rescale every parameter by the range of ``truths`` before measuring distances, so
            that no parameter dominates through its units.
        n_alpha: Number of credibility levels on [0, 1] at which the curve is evaluated.
        seed: Seed of the references and of the smoothing offsets.

    Returns:
        The coverage curve and its summaries.

    Raises:
        ValueError: On inconsistent shapes, non-finite values or ``n_alpha < 3``.
    """
    samples, theta = _samples_and_truths(posterior_samples, truths)
    if n_alpha < 3:
        raise ValueError(f"n_alpha: expected >= 3, got {n_alpha}")
    rng = np.random.default_rng(seed)
    lo = theta.min(axis=0)
    span = theta.max(axis=0) - lo
    span = np.where(span > 0.0, span, 1.0)
    if references is None:
        ref = lo + span * rng.random(theta.shape)
    else:
        ref = np.asarray(references, dtype=np.float64)
        if ref.shape != theta.shape:
            raise ValueError(f"references: expected shape {theta.shape}, got {ref.shape}")
    if normalize:
        samples = (samples - lo) / span
        theta = (theta - lo) / span
        ref = (ref - lo) / span
    sample_distance = np.linalg.norm(samples - ref[:, None, :], axis=-1)  # (n_obs, n_draws)
    truth_distance = np.linalg.norm(theta - ref, axis=-1)  # (n_obs,)
    closer = np.sum(sample_distance < truth_distance[:, None], axis=1)
    ties = np.sum(sample_distance == truth_distance[:, None], axis=1)
    n_draws = samples.shape[1]
    f = (closer + rng.random(len(theta)) * (ties + 1)) / (n_draws + 1)
    alpha = np.linspace(0.0, 1.0, n_alpha)
    ecp = np.mean(f[None, :] <= alpha[:, None], axis=1)
    gap = ecp - alpha
    upper = alpha >= 0.5
    return TarpResult(
        alpha=alpha,
        ecp=ecp,
        atc=float(_trapezoid(gap[upper], alpha[upper])),
        area=float(_trapezoid(np.abs(gap), alpha)),
        ks_p_value=float(stats.kstest(f, "uniform").pvalue),
        coverage_values=f,
    )


# ---------------------------------------------------------------------------------------------
# Betancourt's per-observation summaries


def z_scores(posterior_samples: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """Posterior z-scores ``(posterior mean - truth) / posterior std`` (Betancourt 2018).

    Over many observations from the prior, z-scores of a calibrated posterior have mean 0 and
    variance about 1; large magnitudes flag a posterior that is biased or too narrow.

    Args:
        posterior_samples: Posterior draws, shape (n_obs, n_draws, d), parameter units.
        truths: True parameters, shape (n_obs, d), parameter units.

    Returns:
        Dimensionless z-scores, shape (n_obs, d).

    Raises:
        ValueError: On inconsistent shapes, non-finite values or fewer than 2 draws.
    """
    samples, theta = _samples_and_truths(posterior_samples, truths)
    if samples.shape[1] < 2:
        raise ValueError("posterior_samples: need at least 2 draws per observation")
    std = samples.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (samples.mean(axis=1) - theta) / std


def posterior_contraction(
    posterior_samples: np.ndarray, prior_variance: np.ndarray | float
) -> np.ndarray:
    """Posterior contraction ``1 - posterior variance / prior variance`` (Betancourt 2018).

    Near 1: the data pinned the parameter down; near 0: the posterior is the prior (the parameter
    is not identified by the data).

    Args:
        posterior_samples: Posterior draws, shape (n_obs, n_draws, d), parameter units.
        prior_variance: Prior marginal variance of each parameter, shape (d,) or scalar, in squared
            parameter units (e.g. ``width**2 / 12`` for a uniform prior).

    Returns:
        Contraction, shape (n_obs, d); at most 1, negative when the posterior is wider than the
        prior.

    Raises:
        ValueError: On a bad shape, fewer than 2 draws or a non-positive prior variance.
    """
    samples = np.asarray(posterior_samples, dtype=np.float64)
    if samples.ndim != 3 or samples.shape[1] < 2:
        raise ValueError(
            "posterior_samples: expected shape (n_obs, n_draws >= 2, d), got " f"{samples.shape}"
        )
    prior = np.broadcast_to(np.asarray(prior_variance, dtype=np.float64), (samples.shape[2],))
    if np.any(~(prior > 0.0)):
        raise ValueError(f"prior_variance: expected positive values, got {prior_variance!r}")
    return 1.0 - samples.var(axis=1, ddof=1) / prior


# ---------------------------------------------------------------------------------------------
# Optimal transport


def wasserstein(a: np.ndarray, b: np.ndarray, p: int = 2, max_pairs: int = 25_000_000) -> float:
    """Exact ``p``-Wasserstein distance between two empirical distributions (equal weights).

    Solved as a linear program (earth mover's distance, POT's ``ot.emd2``) over the Euclidean
    ground cost raised to the power ``p``; memory and time grow with ``n * m``, so this is meant for
    a few thousand samples each.

    Args:
        a: First sample, shape (n, d), parameter units.
        b: Second sample, shape (m, d), same units.
        p: Order of the distance, >= 1.
        max_pairs: Refuse problems with more than this many sample pairs ``n * m`` (the cost matrix
            takes ``8 * n * m`` bytes).

    Returns:
        The distance, in the units of the samples.

    Raises:
        ValueError: On inconsistent shapes, non-finite values, ``p < 1`` or too many pairs.
        UserError: If POT is not installed.
    """
    xa = _as_2d("a", a)
    xb = _as_2d("b", b)
    if xa.shape[1] != xb.shape[1]:
        raise ValueError(f"a, b: expected the same dimension d, got {xa.shape[1]} and {xb.shape[1]}")
    if p < 1:
        raise ValueError(f"p: expected >= 1, got {p}")
    if len(xa) * len(xb) > max_pairs:
        raise ValueError(
            f"a, b: {len(xa)} x {len(xb)} sample pairs exceed max_pairs={max_pairs}; subsample them"
        )
    try:
        import ot
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise UserError(
            "wasserstein() needs POT, the Python Optimal Transport package ('pip install pot', "
            "part of the 'bench' extra)"
        ) from error
    cost = ot.dist(xa, xb, metric="euclidean") ** p
    weights_a = np.full(len(xa), 1.0 / len(xa))
    weights_b = np.full(len(xb), 1.0 / len(xb))
    # The network simplex needs more iterations than POT's default for a few thousand samples.
    transport_cost = ot.emd2(weights_a, weights_b, cost, numItermax=max(100_000, 50 * cost.size))
    return float(transport_cost) ** (1.0 / p)

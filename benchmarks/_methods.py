"""Amortized inference methods shared by the benchmarks: train on ``(theta, x)``, return a sampler.

Each ``fit_*`` function trains one method on the same arrays and returns a :class:`Fitted`, whose
``sample(x, n, seed)`` draws ``n`` posterior samples for one observation and whose
``sample_batch(x, n, seed)`` draws ``n`` for each of a batch of observations. Parameters are in
their physical units throughout; the prior is a box (``low``/``high`` per parameter).

* :func:`fit_npe`: sbi's NPE (``density_estimator="zuko_nsf"``, Greenberg et al. 2019 "APT" loss,
  which is plain maximum likelihood in a single round), with sbi's defaults unless the options say
  otherwise;
* :func:`fit_network`: acoustic-inv's INN or cINN through :func:`acoustic_inv.training.fit`.

The same protocol as ``benchmarks/sbibm.py`` (which keeps its own copies for its task objects).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "Fitted",
    "NPE_DEFAULTS",
    "fit_network",
    "fit_npe",
    "machine",
    "versions",
    "write_json_atomic",
    "write_text_atomic",
]

#: sbi 0.27's defaults for ``NPE.train`` that the comparison records (and may override).
NPE_DEFAULTS: dict[str, Any] = {
    "density_estimator": "zuko_nsf",
    "training_batch_size": 200,
    "learning_rate": 5e-4,
    "validation_fraction": 0.1,
    "stop_after_epochs": 20,
    "max_num_epochs": 2**31 - 1,
    "clip_max_norm": 5.0,
}


@dataclass
class Fitted:
    """A trained amortized method.

    Attributes:
        sample: ``sample(x, n, seed)``: ``n`` posterior draws, shape (n, d), parameter units, for
            one observation ``x`` of shape (m,).
        sample_batch: ``sample_batch(x, n, seed)``: shape (b, n, d) for observations (b, m).
        details: What to record about the training (configuration, epochs, ...).
    """

    sample: Callable[[np.ndarray, int, int], np.ndarray]
    sample_batch: Callable[[np.ndarray, int, int], np.ndarray]
    details: dict[str, Any] = field(default_factory=dict)


def fit_npe(
    theta: np.ndarray,
    x: np.ndarray,
    low: Sequence[float],
    high: Sequence[float],
    *,
    seed: int,
    options: Mapping[str, Any] | None = None,
) -> Fitted:
    """Trains sbi's NPE on ``(theta, x)`` under a box-uniform prior.

    Args:
        theta: Training parameters, shape (n, d), parameter units.
        x: Training observations, shape (n, m).
        low: Prior lower bounds, shape (d,).
        high: Prior upper bounds, shape (d,).
        seed: Seed of the initialization, the validation split and the batches.
        options: Keys of :data:`NPE_DEFAULTS` to override (``density_estimator`` and the keyword
            arguments of ``NPE.train``).

    Returns:
        The sampler; draws outside the prior box are rejected by sbi (its default).
    """
    import six  # noqa: F401  (sbi 0.27 imports modules that need it; fail here with a clear name)
    from sbi.inference import NPE
    from sbi.utils import BoxUniform

    settings = {**NPE_DEFAULTS, **dict(options or {})}
    unknown = sorted(set(settings) - set(NPE_DEFAULTS))
    if unknown:
        raise ValueError(f"NPE options: unknown {unknown}; expected some of {sorted(NPE_DEFAULTS)}")
    prior = BoxUniform(torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32))
    torch.manual_seed(seed)
    inference = NPE(prior=prior, density_estimator=settings["density_estimator"], show_progress_bars=False)
    inference.append_simulations(torch.as_tensor(theta, dtype=torch.float32), torch.as_tensor(x, dtype=torch.float32))
    train_options = {k: v for k, v in settings.items() if k != "density_estimator"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # sbi prints its convergence message
        estimator = inference.train(**train_options)
    posterior = inference.build_posterior(estimator)

    def sample(x_o: np.ndarray, n: int, seed: int) -> np.ndarray:
        torch.manual_seed(seed)
        draws = posterior.sample((n,), x=torch.as_tensor(x_o, dtype=torch.float32)[None], show_progress_bars=False)
        return draws.numpy().astype(np.float64)

    def sample_batch(x_b: np.ndarray, n: int, seed: int) -> np.ndarray:
        torch.manual_seed(seed)
        with warnings.catch_warnings():
            # sbi caps its sampling batch for memory and says so on every call.
            warnings.filterwarnings("ignore", message="Capping max_sampling_batch_size")
            draws = posterior.sample_batched((n,), x=torch.as_tensor(x_b, dtype=torch.float32),
                                             show_progress_bars=False)
        return draws.numpy().astype(np.float64).transpose(1, 0, 2)  # sbi: (n, b, d)

    summary = getattr(inference, "_summary", {})
    epochs = summary.get("epochs_trained", [None])
    best = summary.get("best_validation_loss", [None])
    return Fitted(
        sample=sample,
        sample_batch=sample_batch,
        details={
            "settings": settings,
            "epochs": epochs[-1] if epochs else None,
            "best_validation_loss": float(best[-1]) if best and best[-1] is not None else None,
            "n_network_parameters": sum(p.numel() for p in estimator.parameters()),
            "sbi_output": printed.getvalue().strip(),
        },
    )


def fit_network(
    theta: np.ndarray,
    x: np.ndarray,
    params: Sequence[Any],
    values: Mapping[str, Any],
    *,
    source: str,
    out: str | Path | None = None,
    progress: bool = False,
    noise: np.ndarray | None = None,
    members: int = 1,
) -> Fitted:
    """Trains acoustic-inv's INN or cINN with :func:`acoustic_inv.training.fit`.

    With ``members > 1``, trains that many networks from seeds ``seed, seed + 1, ...`` and pools them
    into an equal-weight :class:`~acoustic_inv.models.EnsembleModel` (a deep ensemble).

    Args:
        theta: Training parameters, shape (n, d), parameter units.
        x: Training observations, shape (n, m).
        params: One :class:`acoustic_inv.sources.ParamInfo` per parameter (names, units, bounds).
        values: :class:`~acoustic_inv.train_config.TrainConfig` fields.
        source: What to call ``values`` in configuration errors (a file name).
        out: Model file; with it, training resumes from ``<out>.resume`` after an interruption.
        progress: Show per-epoch progress.
        noise: The simulator's noise realization behind each row, shape (n, k), for the INN's
            ``theta_pad`` mode (:class:`acoustic_inv.sources.InMemorySource` ``noise=``).
        members: Networks in the ensemble (1: a single network).

    Raises:
        acoustic_inv.errors.UserError: for a bad configuration or a diverging run.
    """
    from acoustic_inv.sources import InMemorySource
    from acoustic_inv.train_config import TrainConfig
    from acoustic_inv.training import fit

    from dataclasses import replace

    from acoustic_inv.models import EnsembleModel

    config = TrainConfig.from_dict(dict(values), source=source)
    data = InMemorySource(theta, x, params, noise=noise)
    results = []
    for k in range(members):
        member_out = out if out is None or members == 1 else Path(out).with_name(f"{Path(out).stem}-{k}.pt")
        results.append(fit(data, replace(config, seed=config.seed + k), out=member_out, progress=progress))
    result = results[0]
    model = result.model if members == 1 else EnsembleModel([r.model for r in results])

    def sample(x_o: np.ndarray, n: int, seed: int) -> np.ndarray:
        return model.sample(np.asarray(x_o, dtype=np.float64), n, seed=seed).numpy()

    def sample_batch(x_b: np.ndarray, n: int, seed: int) -> np.ndarray:
        draws = model.sample(np.asarray(x_b, dtype=np.float64), n, seed=seed).numpy()  # (n, b, d)
        return draws.transpose(1, 0, 2)

    seconds = [h.get("seconds") for r in results for h in r.history if h.get("seconds") is not None]
    details = {
        "config": config.to_dict(),
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "epoch_seconds_sum": round(float(sum(seconds)), 1) if seconds else None,
        "final_val": result.history[-1]["val"] if result.history else None,
        "n_network_parameters": sum(p.numel() for r in results for p in r.model.network.parameters()),
    }
    if members > 1:
        details["members"] = [{"seed": config.seed + k, "epochs": len(r.history), "best_epoch": r.best_epoch,
                               "resumed_from_epoch": r.resumed_from_epoch} for k, r in enumerate(results)]
        details["resumed_from_epoch"] = max(r.resumed_from_epoch for r in results)
    return Fitted(sample=sample, sample_batch=sample_batch, details=details)


def versions() -> dict[str, Any]:
    """Versions of the packages the benchmarks depend on (``None`` where one is missing)."""
    import acoustic_inv

    found: dict[str, Any] = {"acoustic_inv": acoustic_inv.__version__, "numpy": np.__version__, "torch": torch.__version__}
    for module in ("sbi", "zuko", "scipy", "ot", "sklearn", "xarray", "pelagic"):
        try:
            found[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            found[module] = None
    return found


def machine(threads: int) -> dict[str, Any]:
    """Where the numbers were measured."""
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "torch_threads": threads,
        "load_average": list(os.getloadavg()),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_text_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` atomically, with ordinary permissions (:mod:`acoustic_inv.fileio`)."""
    from acoustic_inv.fileio import atomic_write_text

    atomic_write_text(path, text)


def write_json_atomic(path: Path, document: Any) -> None:
    """Writes a JSON document atomically (NaN and infinities as ``null``)."""
    write_text_atomic(path, json.dumps(_finite(document), indent=2) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, (np.floating,)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.ndarray):
        return [_finite(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value

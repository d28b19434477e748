"""Amortized inference on three sbibm tasks: C2ST of each method's posterior against the reference.

Tasks (Lueckmann et al. 2021, "Benchmarking simulation-based inference"; priors and simulators
re-implemented in ``benchmarks/_tasks.py``, observations and reference posteriors read from the
``sbibm`` 1.1.0 wheel, fetched once into ``~/.cache/acoustic-inv/sbibm``):

* ``two_moons`` (2 parameters, 2 data), ``slcp`` (5, 8), ``gaussian_linear`` (10, 10).

Methods (pluggable: :data:`METHODS` maps a name to a function that trains on ``(theta, x)``, with
the simulator's noise realization beside them, and returns a sampler):

* ``npe``: sbi's NPE (neural posterior estimation, "NPE-C") with ``density_estimator="zuko_nsf"``
  and sbi's default training (batches of 200, learning rate 5e-4, early stopping after 20 epochs);
* ``cinn``, ``inn``: acoustic-inv's conditional INN and padded INN (``acoustic_inv.training.fit``),
  trained with the configs of ``benchmarks/configs/`` (``sbibm-cinn.toml``, ``sbibm-inn.toml``: the
  ones of the README's table and ``benchmarks/losses.md``), or others given with ``--cinn-config`` /
  ``--inn-config`` (``defaults``: the plain :class:`~acoustic_inv.train_config.TrainConfig`). An INN in ``noise_mode = "theta_pad"`` gets the
  simulator's noise variables of every training pair (``_tasks.Task.simulate_with_noise``: the
  standard normals behind the draw; the same simulation set) on its parameter side, so its forward
  map is deterministic (``benchmarks/losses.md``); NPE and the cINN see only ``(theta, x)``.

Protocol: per task one simulation set (``--n-sims`` prior draws, seed ``--seed``), one network per
method trained on it, then for observations 1 to ``--n-obs`` of sbibm: ``--n-posterior`` posterior
draws against the first as many reference draws. This is amortized inference: one network serves
every observation. sbibm's published numbers come from a fresh network per observation, each with
its own budget of simulations.

C2ST (``acoustic_inv.diagnostics.c2st``, 5 folds): ``sbibm`` is sbibm's protocol (scikit-learn's
``MLPClassifier`` stopped on its training loss; torch with ``early_stopping=False`` where
scikit-learn is missing), comparable with published numbers but slow on near-identical samples
(about 3 minutes per test on gaussian_linear); ``fast`` is the torch classifier with early
stopping on a validation split, seconds per test, and not comparable with the other rule (near
0.5 it scores higher, far from it often lower). ``--c2st both`` (the default) records both.

Usage::

    python benchmarks/sbibm.py --quick                  # smoke test, well under a minute
    python benchmarks/sbibm.py                          # full run; see the timing below
    python benchmarks/sbibm.py --tasks slcp --methods npe cinn --n-obs 5
    python benchmarks/sbibm.py --c2st fast --n-obs 3    # the README's table
    python benchmarks/sbibm.py --methods inn --inn-config defaults   # the untuned INN

Expected time of the full run (10 000 simulations, 10 000 draws, 3 tasks x 3 methods, 2 busy
cores; epoch times measured, epoch counts estimated): training NPE about 1.5 s per epoch (sbi's
early stopping usually ends after 100 to 200 epochs: 2 to 5 minutes per task), cINN and INN about
0.8 s per epoch (at most 100 epochs: under 1.5 minutes). The sbibm-protocol C2ST dominates: about
3 s (two_moons), 45 s (slcp) and 3 minutes (gaussian_linear) per observation and method, so about
1 hour with the default ``--n-obs 3`` and 2.5 hours with ``--n-obs 10``; ``--c2st fast`` brings
the whole run to about 30 minutes.

Writes ``benchmarks/results/sbibm.json`` (``sbibm-quick.json`` with ``--quick``; ``--out`` to
choose) atomically. Entries of an existing file for other tasks and methods are kept, so a run of
one task or method updates only its own entries.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
DEFAULT_CONFIGS = {"cinn": _HERE / "configs" / "sbibm-cinn.toml", "inn": _HERE / "configs" / "sbibm-inn.toml"}
_ROOT = _HERE.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import _tasks  # noqa: E402
from acoustic_inv.diagnostics import c2st  # noqa: E402

RESULTS_DIR = _HERE / "results"

#: Published C2ST of NPE at 10^4 simulations (Lueckmann et al. 2021), as given by the project lead;
#: not re-checked here against the sbi-benchmark results repository.
PUBLISHED_NPE_C2ST_1E4 = {"two_moons": 0.606, "slcp": 0.901, "gaussian_linear": 0.552}


@dataclass(frozen=True)
class Settings:
    """One benchmark run.

    Attributes:
        n_sims: Simulations per task (training plus validation pairs).
        n_obs: sbibm observations evaluated, 1 to n_obs.
        n_posterior: Posterior draws per observation (and reference draws they are compared with).
        seed: Seed of the simulations, the training and the draws.
        quick: Smoke-test settings (few epochs).
        c2st: ``"sbibm"``, ``"fast"`` or ``"both"``.
        threads: torch intra-op threads.
        config_files: Optional TrainConfig file per acoustic-inv architecture.
    """

    n_sims: int
    n_obs: int
    n_posterior: int
    seed: int
    quick: bool
    c2st: str
    threads: int
    config_files: dict[str, str] = field(default_factory=dict)


@dataclass
class Fitted:
    """A trained method.

    Attributes:
        sample: ``sample(x, n, seed)`` draws n posterior samples (n, dim_theta) for one observation
            x (dim_x,).
        details: What to record about the training (configuration, epochs).
    """

    sample: Callable[[np.ndarray, int, int], np.ndarray]
    details: dict[str, Any]


#: ``fit(task, theta (n, dim_theta), x (n, dim_x), noise (n, noise_dim), settings)``; ``noise`` is
#: the simulator's noise realization behind each x, used only by methods that can carry it.
FitFunction = Callable[[_tasks.Task, np.ndarray, np.ndarray, np.ndarray, Settings], Fitted]


# ---------------------------------------------------------------------------------------------
# Methods


def fit_npe(
    task: _tasks.Task, theta: np.ndarray, x: np.ndarray, noise: np.ndarray, settings: Settings
) -> Fitted:
    """sbi's NPE with a zuko neural spline flow, trained with sbi's defaults (``noise`` unused)."""
    import six  # noqa: F401  (sbi 0.27 imports modules that need it; fail here with a clear name)
    from sbi.inference import NPE
    from sbi.utils import BoxUniform

    if task.prior_kind == "uniform":
        prior = BoxUniform(
            torch.tensor(task.prior_low, dtype=torch.float32),
            torch.tensor(task.prior_high, dtype=torch.float32),
        )
    else:
        prior = torch.distributions.MultivariateNormal(
            torch.tensor(task.prior_loc, dtype=torch.float32),
            torch.diag(torch.tensor(task.prior_var, dtype=torch.float32)),
        )
    torch.manual_seed(settings.seed)
    inference = NPE(prior=prior, density_estimator="zuko_nsf", show_progress_bars=False)
    inference.append_simulations(
        torch.as_tensor(theta, dtype=torch.float32), torch.as_tensor(x, dtype=torch.float32)
    )
    train_options: dict[str, Any] = {}
    if settings.quick:
        train_options["max_num_epochs"] = 5
    estimator = inference.train(**train_options)
    posterior = inference.build_posterior(estimator)

    def sample(x_o: np.ndarray, n: int, seed: int) -> np.ndarray:
        torch.manual_seed(seed)
        draws = posterior.sample(
            (n,), x=torch.as_tensor(x_o, dtype=torch.float32)[None], show_progress_bars=False
        )
        return draws.numpy().astype(np.float64)

    summary = getattr(inference, "_summary", {})
    epochs = summary.get("epochs_trained", [None])
    return Fitted(
        sample=sample,
        details={
            "density_estimator": "zuko_nsf",
            "train_options": train_options or "sbi defaults",
            "epochs": epochs[-1] if epochs else None,
        },
    )


def _fit_acoustic_inv(
    architecture: str,
    task: _tasks.Task,
    theta: np.ndarray,
    x: np.ndarray,
    noise: np.ndarray | None,
    settings: Settings,
) -> Fitted:
    """acoustic-inv's INN or cINN: the config file of ``settings`` (or the defaults), trained.

    ``noise`` goes to an INN in ``theta_pad`` mode only (an INN in ``"y"`` mode refuses it).
    """
    from acoustic_inv.train_config import load_train_config

    path = settings.config_files.get(architecture)
    if path is not None:
        base = load_train_config(path)
        if base.architecture != architecture:
            raise SystemExit(
                f"{path}: architecture is {base.architecture!r}, but it was given for {architecture!r}"
            )
        values = base.to_dict()
    else:
        values = {"architecture": architecture}
    values["seed"] = settings.seed
    if settings.quick:
        values["epochs"] = 3
    carries_noise = values.get("architecture") == "inn" and values.get("noise_mode", "y") == "theta_pad"
    return train_acoustic_inv(
        task, theta, x, values, source=path or f"{architecture} defaults",
        noise=noise if carries_noise else None,
    )


def train_acoustic_inv(
    task: _tasks.Task,
    theta: np.ndarray,
    x: np.ndarray,
    values: dict[str, Any],
    source: str,
    noise: np.ndarray | None = None,
) -> Fitted:
    """Trains an INN or cINN in memory with ``acoustic_inv.training.fit``.

    Args:
        task: The task (for the parameters' prior bounds).
        theta: Training parameters, shape (n, dim_theta).
        x: Training data, shape (n, dim_x).
        values: :class:`~acoustic_inv.train_config.TrainConfig` fields.
        source: What to call ``values`` in configuration errors.
        noise: The simulator's noise realization behind each x, shape (n, noise_dim), for an
            INN in ``theta_pad`` mode; ``None``: none.
    """
    from acoustic_inv.sources import InMemorySource, ParamInfo
    from acoustic_inv.train_config import TrainConfig
    from acoustic_inv.training import fit

    config = TrainConfig.from_dict(values, source=source)
    if task.prior_kind == "uniform":
        params = [
            ParamInfo(f"theta_{i}", "1", low, high)
            for i, (low, high) in enumerate(zip(task.prior_low, task.prior_high))
        ]
    else:
        params = [ParamInfo(f"theta_{i}", "1") for i in range(task.dim_theta)]
    result = fit(InMemorySource(theta, x, params, noise=noise), config)
    model = result.model

    def sample(x_o: np.ndarray, n: int, seed: int) -> np.ndarray:
        return model.sample(np.asarray(x_o, dtype=np.float64), n, seed=seed).numpy()

    return Fitted(
        sample=sample,
        details={
            "config": config.to_dict(),
            "epochs": len(result.history),
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
        },
    )


def fit_cinn(
    task: _tasks.Task, theta: np.ndarray, x: np.ndarray, noise: np.ndarray, settings: Settings
) -> Fitted:
    """acoustic-inv's conditional INN (``noise`` unused)."""
    return _fit_acoustic_inv("cinn", task, theta, x, None, settings)


def fit_inn(
    task: _tasks.Task, theta: np.ndarray, x: np.ndarray, noise: np.ndarray, settings: Settings
) -> Fitted:
    """acoustic-inv's padded INN; in ``theta_pad`` mode it carries ``noise`` on its parameter side."""
    return _fit_acoustic_inv("inn", task, theta, x, noise, settings)


METHODS: dict[str, FitFunction] = {"npe": fit_npe, "cinn": fit_cinn, "inn": fit_inn}


# ---------------------------------------------------------------------------------------------
# Running


def _sklearn_available() -> bool:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


def _c2st_scores(reference: np.ndarray, draws: np.ndarray, settings: Settings) -> dict[str, float]:
    scores: dict[str, float] = {}
    if settings.c2st in ("fast", "both"):
        scores["fast"] = c2st(reference, draws, seed=settings.seed)
    if settings.c2st in ("sbibm", "both"):
        if _sklearn_available():
            scores["sbibm"] = c2st(reference, draws, seed=settings.seed, classifier="sklearn")
        else:
            scores["sbibm"] = c2st(reference, draws, seed=settings.seed, early_stopping=False)
    return scores


def run_task(name: str, methods: list[str], settings: Settings, log: Callable[[str], None]) -> dict[str, Any]:
    """Simulates, trains every method and scores it on the task's observations."""
    task = _tasks.TASKS[name]
    rng = np.random.default_rng([settings.seed, 0])
    started = time.perf_counter()
    theta = task.sample_prior(settings.n_sims, rng)
    x, noise = task.simulate_with_noise(theta, rng)
    simulate_s = time.perf_counter() - started
    references = [_tasks.load_reference(name, k) for k in range(1, settings.n_obs + 1)]
    out: dict[str, Any] = {
        "n_simulations": settings.n_sims,
        "simulation_seconds": round(simulate_s, 3),
        "dim_theta": task.dim_theta,
        "dim_x": task.dim_x,
        "observations": [r.index for r in references],
        "methods": {},
    }
    for method in methods:
        log(f"{name}/{method}: training on {settings.n_sims} simulations")
        torch.manual_seed(settings.seed)
        started = time.perf_counter()
        fitted = METHODS[method](task, theta, x, noise, settings)
        train_s = time.perf_counter() - started
        per_obs: list[dict[str, Any]] = []
        for ref in references:
            started = time.perf_counter()
            draws = fitted.sample(ref.x, settings.n_posterior, settings.seed * 1000 + ref.index)
            sample_s = time.perf_counter() - started
            if draws.shape != (settings.n_posterior, task.dim_theta) or not np.all(np.isfinite(draws)):
                raise RuntimeError(f"{name}/{method}: bad posterior draws, shape {draws.shape}")
            started = time.perf_counter()
            scores = _c2st_scores(ref.samples[: settings.n_posterior], draws, settings)
            c2st_s = time.perf_counter() - started
            per_obs.append(
                {
                    "observation": ref.index,
                    "c2st": scores,
                    "sample_seconds": round(sample_s, 3),
                    "c2st_seconds": round(c2st_s, 1),
                }
            )
            shown = ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
            log(f"{name}/{method}: observation {ref.index}: C2ST {shown} ({c2st_s:.0f} s)")
        entry: dict[str, Any] = {
            "train_seconds": round(train_s, 1),
            "sample_seconds_mean": round(float(np.mean([o["sample_seconds"] for o in per_obs])), 3),
            "n_posterior_samples": settings.n_posterior,
            "n_observations": len(per_obs),
            "seed": settings.seed,
            "per_observation": per_obs,
            "details": fitted.details,
            "settings": asdict(settings),
        }
        for kind in per_obs[0]["c2st"]:
            values = [o["c2st"][kind] for o in per_obs]
            entry[f"c2st_{kind}_mean"] = round(float(np.mean(values)), 4)
            entry[f"c2st_{kind}_std"] = round(float(np.std(values)), 4)
        out["methods"][method] = entry
    return out


def _versions() -> dict[str, Any]:
    import acoustic_inv

    found: dict[str, Any] = {
        "acoustic_inv": acoustic_inv.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "sbibm_wheel": {"version": _tasks.SBIBM_VERSION, "sha256": _tasks.SBIBM_WHEEL_SHA256},
    }
    for module in ("sbi", "zuko", "sklearn", "scipy"):
        try:
            found[module] = __import__(module).__version__
        except ImportError:
            found[module] = None
    return found


def _write_atomic(path: Path, document: dict[str, Any]) -> None:
    from acoustic_inv.fileio import atomic_write_json

    atomic_write_json(path, document)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(_tasks.TASKS), default=list(_tasks.TASKS))
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=list(METHODS))
    parser.add_argument("--n-sims", type=int, default=None, help="simulations per task (10000)")
    parser.add_argument("--n-obs", type=int, default=None, help="observations 1..N (3; at most 10)")
    parser.add_argument("--n-posterior", type=int, default=None, help="posterior draws (10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--c2st", choices=["sbibm", "fast", "both"], default=None,
                        help="C2ST classifier(s); default both (fast with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--cinn-config", default=str(DEFAULT_CONFIGS["cinn"]),
                        help="TrainConfig file for cinn (default: benchmarks/configs/sbibm-cinn.toml, the "
                             "tuned one of the README's table; 'defaults': the TrainConfig defaults)")
    parser.add_argument("--inn-config", default=str(DEFAULT_CONFIGS["inn"]),
                        help="TrainConfig file for inn (default: benchmarks/configs/sbibm-inn.toml; "
                             "'defaults': the TrainConfig defaults, an INN in 'y' noise mode)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 1000 simulations, 1 observation, 1000 draws, few epochs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    quick = args.quick
    settings = Settings(
        n_sims=args.n_sims or (1000 if quick else 10_000),
        n_obs=args.n_obs or (1 if quick else 3),
        n_posterior=args.n_posterior or (1000 if quick else 10_000),
        seed=args.seed,
        quick=quick,
        c2st=args.c2st or ("fast" if quick else "both"),
        threads=args.threads,
        config_files={
            k: str(v) for k, v in (("cinn", args.cinn_config), ("inn", args.inn_config)) if v != "defaults"
        },
    )
    if not 1 <= settings.n_obs <= _tasks.N_OBSERVATIONS:
        parser.error(f"--n-obs: expected 1 to {_tasks.N_OBSERVATIONS}, got {settings.n_obs}")
    if not 1 <= settings.n_posterior <= 10_000:
        parser.error(f"--n-posterior: expected 1 to 10000 (the reference draws), got {settings.n_posterior}")
    if settings.n_sims < 20:
        parser.error(f"--n-sims: expected >= 20, got {settings.n_sims}")
    torch.set_num_threads(settings.threads)
    out_path = args.out or RESULTS_DIR / ("sbibm-quick.json" if quick else "sbibm.json")

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    document: dict[str, Any] = {}
    if out_path.exists():
        try:
            document = json.loads(out_path.read_text())
        except json.JSONDecodeError:
            document = {}
    started = time.perf_counter()
    load_start = os.getloadavg()
    tasks_out = document.get("tasks", {})
    for name in args.tasks:
        result = run_task(name, args.methods, settings, log)
        previous = tasks_out.get(name, {})
        if previous.get("n_simulations") == result["n_simulations"] and previous.get(
            "observations"
        ) == result["observations"]:
            # Same simulation set-up: keep the other methods' entries beside the new ones.
            merged_methods = {**previous.get("methods", {}), **result["methods"]}
            result["methods"] = merged_methods
        tasks_out[name] = result
    document.update(
        {
            "benchmark": "sbibm",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
            "protocol": (
                "amortized: per task one set of prior simulations and one network per method, "
                "evaluated on sbibm observations 1..n_obs; C2ST of n_posterior draws against the "
                "first n_posterior reference draws, 5-fold, z-scored with the reference. 'sbibm': "
                "scikit-learn MLPClassifier as in sbibm; 'fast': torch MLP with early stopping "
                "(not comparable with published numbers or with 'sbibm'). Published numbers train "
                "one network per observation."
            ),
            "published_npe_c2st_1e4_simulations": {
                "values": PUBLISHED_NPE_C2ST_1E4,
                "source": "Lueckmann et al. (2021), as given by the project lead; not re-checked",
                "protocol": "sbibm C2ST; one NPE network per observation, 10 observations",
            },
            "machine": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "torch_threads": settings.threads,
                "load_average_start": list(load_start),
                "load_average_end": list(os.getloadavg()),
                "wall_seconds": round(time.perf_counter() - started, 1),
            },
            "versions": _versions(),
            "tasks": tasks_out,
        }
    )
    _write_atomic(out_path, document)
    log(f"wrote {out_path}")
    for name in args.tasks:
        for method, entry in tasks_out[name]["methods"].items():
            scores = ", ".join(
                f"{k[5:-5]} {entry[k]:.3f}" for k in entry if k.startswith("c2st_") and k.endswith("_mean")
            )
            print(f"{name:16s} {method:5s} C2ST {scores}  (train {entry['train_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Loss and architecture study: C2ST of INN and cINN variants on two sbibm tasks.

Each variant is a set of :class:`~acoustic_inv.train_config.TrainConfig` fields (:data:`VARIANTS`):
the INN with Ardizzone et al.'s MMD losses, maximum likelihood, the VINA f-divergence in its joint
and inverse forms (Shekhar et al. 2026, arXiv 2602.20480) with several divergences, and Sinkhorn
divergences; the cINN with maximum likelihood alone and with the inverse f-divergence added; one
latent-size and one depth variation.

Protocol (as ``benchmarks/sbibm.py``, amortized): per task and seed one set of ``--n-sims`` prior
simulations (the same set as ``sbibm.py`` for seed 0), one network per variant, trained for
``--epochs`` epochs at most (cosine schedule over that many, early stopping after 15 epochs
without validation progress), then ``--n-posterior`` posterior draws for each of sbibm's
observations 1 to ``--n-obs``, scored by C2ST against as many reference draws. The C2ST is the
"fast" one of ``sbibm.py`` (torch classifier stopped on a validation split; not comparable with
published sbibm numbers, see :func:`acoustic_inv.diagnostics.c2st`).

One thread, 2 busy cores: about 21 minutes for the default study (Sinkhorn 2.5 minutes per
network, every other variant under 35 s, C2ST 5 to 20 s per test).

Usage::

    python benchmarks/losses.py                          # the whole study; about 21 minutes
    python benchmarks/losses.py --variants inn_mmd cinn_ml --tasks two_moons
    python benchmarks/losses.py --list                   # the variants and their settings

Results merge into ``benchmarks/results/losses.json`` (``--out``), keyed by task, variant and seed,
so a partial run updates only its own entries. Written atomically.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import _tasks  # noqa: E402
import sbibm  # noqa: E402
from acoustic_inv.diagnostics import c2st  # noqa: E402
from acoustic_inv.errors import UserError  # noqa: E402

#: The INN set-up shared by the INN variants: noise on the observation side, and unit-variance
#: padding so that the padding could carry the simulators' noise (benchmarks/losses.md: it does
#: not, with these losses).
INN_BASE: dict[str, Any] = {"architecture": "inn", "noise_mode": "y", "pad_std": 1.0}
CINN_BASE: dict[str, Any] = {"architecture": "cinn"}

#: name -> (what it tests, TrainConfig fields). ``epochs`` and ``seed`` come from the command line.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "inn_mmd": (
        "INN, Ardizzone et al. (2018): mse_y + MMD on [y, z] + backward MMD on theta",
        {**INN_BASE, "losses": {"mse_y": 1.0, "mmd_yz": 1.0, "mmd_theta": 1.0}},
    ),
    "inn_ml": (
        "INN, maximum likelihood on z with mse_y",
        {**INN_BASE, "losses": {"mse_y": 1.0, "ml_z": 1.0}},
    ),
    "inn_fdiv_joint_kl": (
        "INN, VINA joint form (KL) with mse_y",
        {**INN_BASE, "losses": {"mse_y": 1.0, "fdiv_joint": 1.0}, "f_divergence": "kl"},
    ),
    "inn_fdiv_joint_js": (
        "INN, VINA joint form (Jensen-Shannon) with mse_y",
        {**INN_BASE, "losses": {"mse_y": 1.0, "fdiv_joint": 1.0}, "f_divergence": "js"},
    ),
    "inn_fdiv_joint_pearson": (
        "INN, VINA joint form (Pearson chi^2) with mse_y",
        {**INN_BASE, "losses": {"mse_y": 1.0, "fdiv_joint": 1.0}, "f_divergence": "pearson"},
    ),
    "inn_fdiv_inverse_js": (
        "INN, VINA inverse form (Jensen-Shannon) alone (benchmarks/configs/sbibm-inn.toml)",
        {**INN_BASE, "losses": {"fdiv_inverse": 1.0}, "f_divergence": "js"},
    ),
    "inn_fdiv_inverse_kl": (
        "INN, VINA inverse form (KL) alone",
        {**INN_BASE, "losses": {"fdiv_inverse": 1.0}, "f_divergence": "kl"},
    ),
    "inn_fdiv_inverse_js_ml": (
        "INN, VINA inverse form (Jensen-Shannon) with mse_y + ml_z",
        {**INN_BASE, "losses": {"mse_y": 1.0, "ml_z": 1.0, "fdiv_inverse": 1.0}, "f_divergence": "js"},
    ),
    "inn_sinkhorn": (
        "INN, mse_y + Sinkhorn divergences on [y, z] and on theta (Sinkhorn in place of MMD)",
        {**INN_BASE, "losses": {"mse_y": 1.0, "sinkhorn_yz": 1.0, "sinkhorn_theta": 1.0}},
    ),
    "inn_fdiv_inverse_js_latent2x": (
        "INN, as inn_fdiv_inverse_js with a latent twice the number of parameters",
        {**INN_BASE, "losses": {"fdiv_inverse": 1.0}, "f_divergence": "js", "latent_dim": "2d"},
    ),
    "cinn_ml": (
        "cINN, maximum likelihood (the default)",
        {**CINN_BASE, "losses": {"ml_z": 1.0}},
    ),
    "cinn_ml_fdiv_inverse": (
        "cINN, maximum likelihood + VINA inverse form (Jensen-Shannon, weight 0.1)",
        {**CINN_BASE, "losses": {"ml_z": 1.0, "fdiv_inverse": 0.1}, "f_divergence": "js"},
    ),
    "cinn_ml_3blocks": (
        "cINN, maximum likelihood with 3 coupling blocks instead of 6",
        {**CINN_BASE, "losses": {"ml_z": 1.0}, "n_blocks": 3},
    ),
}

DEFAULT_TASKS = ("gaussian_linear", "two_moons")


def _config_values(variant: str, task: _tasks.Task, epochs: int, seed: int) -> dict[str, Any]:
    values = json.loads(json.dumps(VARIANTS[variant][1]))
    if values.get("latent_dim") == "2d":
        values["latent_dim"] = 2 * task.dim_theta
    values["epochs"] = epochs
    values["seed"] = seed
    return values


def run_variant(
    task_name: str,
    variant: str,
    theta: np.ndarray,
    x: np.ndarray,
    references: list[_tasks.Reference],
    *,
    epochs: int,
    seed: int,
    n_posterior: int,
    log: Any,
) -> dict[str, Any]:
    """Trains one variant on ``(theta, x)`` and scores it on the references (fast C2ST)."""
    task = _tasks.TASKS[task_name]
    values = _config_values(variant, task, epochs, seed)
    torch.manual_seed(seed)
    started = time.perf_counter()
    try:
        fitted = sbibm.train_acoustic_inv(task, theta, x, values, source=f"variant {variant}")
    except UserError as error:
        # A diverging configuration is a result of the study, not a reason to stop it.
        log(f"{task_name}/{variant}/seed {seed}: failed: {error}")
        return {
            "description": VARIANTS[variant][0],
            "seed": seed,
            "c2st_fast_mean": None,
            "failed": str(error),
            "train_seconds": round(time.perf_counter() - started, 1),
            "config": values,
        }
    train_s = time.perf_counter() - started
    per_obs = []
    for ref in references:
        draws = fitted.sample(ref.x, n_posterior, seed * 1000 + ref.index)
        if draws.shape != (n_posterior, task.dim_theta) or not np.all(np.isfinite(draws)):
            score = float("nan")
        else:
            score = c2st(ref.samples[:n_posterior], draws, seed=seed)
        per_obs.append({"observation": ref.index, "c2st_fast": round(float(score), 4)})
    scores = [o["c2st_fast"] for o in per_obs]
    entry = {
        "description": VARIANTS[variant][0],
        "seed": seed,
        "c2st_fast_mean": round(float(np.mean(scores)), 4),
        "per_observation": per_obs,
        "train_seconds": round(train_s, 1),
        "epochs": fitted.details["epochs"],
        "best_epoch": fitted.details["best_epoch"],
        "stopped_early": fitted.details["stopped_early"],
        "config": fitted.details["config"],
    }
    log(
        f"{task_name}/{variant}/seed {seed}: C2ST fast {entry['c2st_fast_mean']:.3f} "
        f"({', '.join(f'{s:.3f}' for s in scores)}), train {train_s:.0f} s, {entry['epochs']} epochs"
    )
    return entry


def markdown_table(document: dict[str, Any], tasks: list[str]) -> str:
    """The study's results as a Markdown table: one row per variant, C2ST and training time per task.

    Args:
        document: The contents of ``losses.json``.
        tasks: The task columns, in order.
    """
    results = document["results"]
    header = "| variant | " + " | ".join(f"{t} C2ST | {t} train s (epochs)" for t in tasks) + " |"
    lines = [header, "|" + "---|" * (1 + 2 * len(tasks))]
    for variant in VARIANTS:
        if not any(variant in results.get(t, {}) for t in tasks):
            continue
        cells = [f"`{variant}`"]
        for t in tasks:
            seeds = results.get(t, {}).get(variant, {})
            if not seeds:
                cells += ["", ""]
                continue
            scores = [e["c2st_fast_mean"] for e in seeds.values() if e["c2st_fast_mean"] is not None]
            if not scores:
                cells += ["diverged", f"{np.mean([e['train_seconds'] for e in seeds.values()]):.0f}"]
                continue
            shown = f"{np.mean(scores):.3f}"
            if len(scores) > 1:
                shown += f" ({', '.join(f'{v:.3f}' for v in scores)})"
            cells.append(shown)
            seconds = np.mean([e["train_seconds"] for e in seeds.values()])
            epochs = "/".join(str(e.get("epochs", "-")) for e in seeds.values())
            cells.append(f"{seconds:.0f} ({epochs})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(_tasks.TASKS), default=list(DEFAULT_TASKS))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs per network (30)")
    parser.add_argument("--n-sims", type=int, default=10_000, help="simulations per task (10000)")
    parser.add_argument("--n-obs", type=int, default=2, help="sbibm observations 1..N (2)")
    parser.add_argument("--n-posterior", type=int, default=5_000, help="posterior draws (5000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--out", type=Path, default=sbibm.RESULTS_DIR / "losses.json")
    parser.add_argument("--list", action="store_true", help="print the variants and exit")
    parser.add_argument("--table", action="store_true",
                        help="print the results in --out as a Markdown table and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(args.out.read_text()), args.tasks))
        return 0
    if args.list:
        for name, (what, values) in VARIANTS.items():
            print(f"{name:24s} {what}\n{'':24s} {values}")
        return 0
    if not 1 <= args.n_obs <= _tasks.N_OBSERVATIONS:
        parser.error(f"--n-obs: expected 1 to {_tasks.N_OBSERVATIONS}, got {args.n_obs}")
    if not 1 <= args.n_posterior <= 10_000:
        parser.error(f"--n-posterior: expected 1 to 10000, got {args.n_posterior}")
    torch.set_num_threads(args.threads)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    document: dict[str, Any] = {}
    if args.out.exists():
        try:
            document = json.loads(args.out.read_text())
        except json.JSONDecodeError:
            document = {}
    results = document.get("results", {})
    started = time.perf_counter()
    run_started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    load_start = os.getloadavg()
    for task_name in args.tasks:
        task = _tasks.TASKS[task_name]
        references = [_tasks.load_reference(task_name, k) for k in range(1, args.n_obs + 1)]
        for seed in args.seeds:
            # The simulation set of sbibm.py for the same seed.
            rng = np.random.default_rng([seed, 0])
            theta = task.sample_prior(args.n_sims, rng)
            x = task.simulate(theta, rng)
            for variant in args.variants:
                entry = run_variant(
                    task_name, variant, theta, x, references,
                    epochs=args.epochs, seed=seed, n_posterior=args.n_posterior, log=log,
                )
                entry["settings"] = {
                    "n_sims": args.n_sims, "n_obs": args.n_obs, "n_posterior": args.n_posterior,
                    "max_epochs": args.epochs, "threads": args.threads, "c2st": "fast",
                }
                results.setdefault(task_name, {}).setdefault(variant, {})[str(seed)] = entry
                document.update(
                    {
                        "benchmark": "losses",
                        "updated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                        "protocol": (
                            "amortized: per task and seed one set of prior simulations, one network per "
                            "variant, evaluated on sbibm observations 1..n_obs; C2ST 'fast' (torch MLP "
                            "with early stopping on a validation split, 5 folds), not comparable with "
                            "published sbibm numbers"
                        ),
                        "versions": sbibm._versions(),
                        "results": results,
                    }
                )
                runs = document.setdefault("runs", [])
                if not runs or runs[-1].get("started") != run_started:
                    runs.append({"started": run_started})
                runs[-1].update(
                    {
                        "command": " ".join(
                            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
                        ),
                        "platform": platform.platform(),
                        "cpus": os.cpu_count(),
                        "torch_threads": args.threads,
                        "load_average_start": list(load_start),
                        "load_average_end": list(os.getloadavg()),
                        "wall_seconds": round(time.perf_counter() - started, 1),
                    }
                )
                # Written after every variant, so an interrupted study keeps what it finished.
                sbibm._write_atomic(args.out, document)
    log(f"wrote {args.out}")
    for task_name in args.tasks:
        for variant in args.variants:
            seeds = results[task_name][variant]
            values = [seeds[str(s)]["c2st_fast_mean"] for s in args.seeds if str(s) in seeds]
            shown = " ".join("failed" if v is None else f"{v:.3f}" for v in values)
            print(f"{task_name:16s} {variant:28s} C2ST fast {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

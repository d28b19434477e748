"""Coverage of the default model on synthetic recordings: the acceptance run of the posterior issue.

For ``--n`` truths drawn from the scenario's prior (seeded), the project's engine synthesizes a
multichannel recording of the scenario's tones at ``--snr`` dB per snapshot (random source phases,
white noise), which is written as a float32 WAV with its JSON sidecar and read back from disk. The
recording then goes through exactly what ``acoustic-inv invert`` does: tonal extraction, the model's
observation features, ``--draws`` posterior draws. Reported per parameter:

- ``coverage_90`` / ``coverage_95``: fraction of truths inside the equal-tailed 90 % / 95 % interval
  (the intervals ``invert`` prints), with a 95 % Wilson interval for that fraction;
- ``median_rel_error``: median over truths of |posterior median - truth| / truth;
- ``median_abs_error`` in the parameter's units, and the median posterior 90 % width.

Goals (issue "Posterior module"): truth inside the 90 % interval for source range, source depth and
water depth in at least 85 % of cases; median source-range error under 5 %.

The engine runs are spread over ``--workers`` processes; inversions run in this process with one
torch thread. Results go to ``benchmarks/results/coverage-<scenario>.json`` (per case too).

Usage::

    python benchmarks/coverage.py                      # default model, 50 recordings, 20 dB
    python benchmarks/coverage.py --model M.pt --n 10 --workers 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Running this file puts benchmarks/ first on sys.path, where benchmarks/propagation.py would shadow
# the propagation package.
if sys.path and Path(sys.path[0]).resolve() == HERE:
    sys.path.pop(0)
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

GOAL_PARAMS = ("source_range_m", "source_depth_m", "water_depth_m")
GOAL_COVERAGE = 0.85
GOAL_RANGE_ERROR = 0.05


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial fraction k / n."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _synthesize(job: tuple[str, list[float], int, float, float, float, str]) -> tuple[int, str | None, float]:
    """Synthesizes one recording and writes it (worker process). Returns (index, error, seconds)."""
    scenario_name, theta, index, snr_db, duration_s, sample_rate_hz, path = job
    from acoustic_inv.scenario import load_scenario
    from acoustic_inv.synth import synthesize, write_synthetic

    start = time.process_time()
    try:
        synthetic = synthesize(load_scenario(scenario_name), np.asarray(theta), duration_s=duration_s,
                               sample_rate_hz=sample_rate_hz, snr_db=snr_db, seed=index)
        write_synthetic(path, synthetic)
    except Exception as error:  # recorded per case; one failed engine run must not end the benchmark
        return index, f"{type(error).__name__}: {error}", time.process_time() - start
    return index, None, time.process_time() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: the shipped default model)")
    parser.add_argument("--n", type=int, default=50, help="number of synthetic recordings")
    parser.add_argument("--snr", type=float, default=20.0, help="SNR per tone and snapshot, dB")
    parser.add_argument("--duration", type=float, default=16.0, help="recording length, s")
    parser.add_argument("--sample-rate", type=float, default=1000.0, help="sampling rate, Hz")
    parser.add_argument("--draws", type=int, default=4000, help="posterior draws per recording")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the truths")
    parser.add_argument("--workers", type=int, default=1, help="processes for the engine runs")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the recordings in this folder; a later run with the same folder and settings "
                             "reuses them instead of synthesizing again (to compare models on the same recordings)")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from acoustic_inv.posterior import Posterior
    from acoustic_inv.recordings import read_recording
    from acoustic_inv.tonals import extract_tonals
    from acoustic_inv.datasets import versions

    posterior = Posterior.load(args.model)
    scenario = posterior.metadata.scenario()
    names = list(scenario.param_names)
    units = list(scenario.prior.units)
    rng = np.random.default_rng(args.seed)
    truths = scenario.prior.sample(rng, args.n)

    folder_ctx = tempfile.TemporaryDirectory() if args.keep is None else None
    folder = Path(folder_ctx.name) if folder_ctx is not None else args.keep
    folder.mkdir(parents=True, exist_ok=True)
    # The worker processes load the scenario by name; write the model's own scenario text beside the
    # recordings so that a model trained on an edited scenario is tested on that scenario.
    scenario_path = folder / "scenario.toml"
    # What the recordings depend on: a kept folder is reused only when all of it matches.
    settings = {"scenario_sha256": posterior.metadata.scenario_sha256, "seed": args.seed, "snr_db": args.snr,
                "duration_s": args.duration, "sample_rate_hz": args.sample_rate}
    manifest_path = folder / "manifest.json"
    stored = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    reusable = stored.get("settings") == settings
    # Recordings that failed to synthesize are tried again (the engine may have been fixed since).
    reuse = {i for i in range(args.n) if reusable and (folder / f"rec-{i:03d}.wav").is_file()}
    scenario_path.write_text(posterior.metadata.scenario_text)
    jobs = [(str(scenario_path), truths[i].tolist(), i, args.snr, args.duration, args.sample_rate,
             str(folder / f"rec-{i:03d}.wav")) for i in range(args.n) if i not in reuse]
    t0 = time.perf_counter()
    errors: dict[int, str] = {}
    engine_cpu = 0.0
    if len(jobs) < args.n:
        print(f"reusing {args.n - len(jobs)} recordings from {folder}", file=sys.stderr)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for done, (index, error, seconds) in enumerate(pool.map(_synthesize, jobs), start=1):
            engine_cpu += seconds
            if error is not None:
                errors[index] = error
            print(f"\rsynthesized {done}/{len(jobs)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    synth_s = time.perf_counter() - t0
    if args.keep is not None:
        tmp = manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"settings": settings, "errors": {str(i): e for i, e in errors.items()}}, indent=1))
        os.replace(tmp, manifest_path)

    cases = []
    t0 = time.perf_counter()
    for i in range(args.n):
        case = {"index": i, "truth": dict(zip(names, truths[i].tolist()))}
        if i in errors:
            case["error"] = errors[i]
            cases.append(case)
            continue
        recording = read_recording(folder / f"rec-{i:03d}.wav")
        estimate = extract_tonals(recording, posterior.freqs_hz)
        result = posterior.invert(estimate, n=args.draws, levels=(0.9, 0.95), seed=args.seed + i)
        s = result.summary
        case["warnings"] = list(result.warnings)
        case["tone_snr_db"] = [float(v) for v in estimate.snr_db]
        for j, name in enumerate(names):
            entry = {"median": float(s["median"].values[j]), "mean": float(s["mean"].values[j])}
            for level in (0.9, 0.95):
                lo = float(s["eti_low"].sel(level=level).values[j])
                hi = float(s["eti_high"].sel(level=level).values[j])
                entry[f"eti_{int(level * 100)}"] = [lo, hi]
                entry[f"inside_{int(level * 100)}"] = bool(lo <= truths[i, j] <= hi)
            case[name] = entry
        cases.append(case)
        print(f"\rinverted {i + 1}/{args.n}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    invert_s = time.perf_counter() - t0
    if folder_ctx is not None:
        folder_ctx.cleanup()

    ok = [c for c in cases if "error" not in c]
    per_param = {}
    for j, name in enumerate(names):
        entry: dict[str, object] = {"units": units[j]}
        for level in (90, 95):
            k = sum(c[name][f"inside_{level}"] for c in ok)
            entry[f"coverage_{level}"] = k / len(ok) if ok else float("nan")
            entry[f"coverage_{level}_wilson95"] = list(wilson(k, len(ok)))
        err = np.array([abs(c[name]["median"] - c["truth"][name]) for c in ok])
        rel = err / np.abs([c["truth"][name] for c in ok])
        width = np.array([c[name]["eti_90"][1] - c[name]["eti_90"][0] for c in ok])
        entry["median_abs_error"] = float(np.median(err)) if ok else float("nan")
        entry["median_rel_error"] = float(np.median(rel)) if ok else float("nan")
        entry["median_width_90"] = float(np.median(width)) if ok else float("nan")
        entry["prior_width_90"] = float(np.diff(scenario.prior.ppf(np.array([[0.05] * len(names),
                                                                              [0.95] * len(names)]))[:, j])[0])
        per_param[name] = entry

    goals = {f"coverage_90 >= {GOAL_COVERAGE} for {name}": bool(per_param[name]["coverage_90"] >= GOAL_COVERAGE)
             for name in GOAL_PARAMS if name in per_param}
    if "source_range_m" in per_param:
        goals[f"median source-range error < {GOAL_RANGE_ERROR:.0%}"] = bool(
            per_param["source_range_m"]["median_rel_error"] < GOAL_RANGE_ERROR)
    report = {
        "benchmark": "coverage",
        "model": str(posterior.path), "model_sha256": posterior.content_sha256,
        "scenario": posterior.metadata.scenario_name,
        "training_data": dict(posterior.metadata.training_data),
        "n_recordings": args.n, "n_failed": len(errors), "snr_db_per_snapshot": args.snr,
        "duration_s": args.duration, "sample_rate_hz": args.sample_rate, "draws": args.draws,
        "seed": args.seed, "format": "float32 WAV + JSON sidecar, read back from disk",
        "parameters": per_param, "goals": goals,
        "n_with_warnings": sum(bool(c.get("warnings")) for c in ok),
        "timing": {"synthesis_wall_s": synth_s, "engine_cpu_s": engine_cpu, "inversion_wall_s": invert_s,
                   "workers": args.workers, "recordings_reused": len(reuse)},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "versions": versions(),
        "cases": cases,
    }
    out = args.out or HERE / "results" / f"coverage-{posterior.metadata.scenario_name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)

    print(f"{'parameter':24s} {'cov90':>6s} {'cov95':>6s} {'med |err|':>10s} {'med rel':>8s} {'w90':>9s} {'prior w90':>9s}")
    for name, e in per_param.items():
        print(f"{name:24s} {e['coverage_90']:6.2f} {e['coverage_95']:6.2f} {e['median_abs_error']:10.4g} "
              f"{e['median_rel_error']:8.3f} {e['median_width_90']:9.4g} {e['prior_width_90']:9.4g}")
    for goal, met in goals.items():
        print(f"{'MET ' if met else 'MISSED'} {goal}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Inversion latency: process start to printed table for 10,000 draws, and sampling alone on the CPU.

The goal (issue "Posterior module"): ``acoustic-inv invert`` on a recording prints its table of 10,000
posterior draws within 5 s of the process starting. Timed here:

- ``command``: ``acoustic-inv invert --model M REC.wav --samples 10000`` as a subprocess, from the
  spawn to the last row of the table on its stdout (``to_table_s``) and to its exit after writing
  post.nc and post.json (``total_s``), with its default of one torch thread; the first run (cold file
  cache) is reported apart from the median of the following ones;
- ``sampling``: the network's 10,000 draws in-process (features already computed), and the whole
  ``Posterior.invert`` (draws, summary with HDIs and KDE modes, checks), with 1 torch thread and with
  torch's default.

The model is the one users get: the shipped default (``data/models/swellex96.pt``, a three-member
ensemble of cINNs for the ``swellex96`` scenario: 21 receivers x 5 tones = 205 features, 7 parameters).
``--model PATH`` times another model file; ``--model train`` times a single cINN of the default
``TrainConfig`` (6 coupling blocks of width 128, embedding 32) trained for one epoch on random features
(timing only; its posterior means nothing), with the metadata ``acoustic-inv train`` attaches. The recording is 60 s of the scenario's tones at 1500 Hz on
21 channels, synthesized with KRAKEN at the scenario's nominal parameters (one engine run, ~3 s).

Usage::

    python benchmarks/invert.py             # writes benchmarks/results/invert.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Running this file puts benchmarks/ first on sys.path, where benchmarks/propagation.py would shadow
# the propagation package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

GOAL_S = 5.0


def build_model(root: Path, scenario, n_train: int = 1024, seed: int = 0) -> Path:
    """A swellex96-sized model (default TrainConfig) with inversion metadata; one epoch on random features."""
    import numpy as np

    from acoustic_inv.checkpoint import save_model
    from acoustic_inv.model_metadata import ModelMetadata, fit_typicality
    from acoustic_inv.observation import ObservationModel
    from acoustic_inv.sources import InMemorySource, ParamInfo
    from acoustic_inv.train_config import TrainConfig
    from acoustic_inv.training import fit

    rng = np.random.default_rng(seed)
    observation = ObservationModel.from_scenario(scenario)
    pressure = rng.normal(size=(n_train, observation.n_freq, observation.n_receiver)) \
        + 1j * rng.normal(size=(n_train, observation.n_freq, observation.n_receiver))
    x = observation.features_from_pressure(pressure)
    theta = scenario.prior.sample(rng, n_train)
    params = [ParamInfo(p.name, p.units, p.low, p.high) for p in scenario.prior.params]
    config = TrainConfig(epochs=1, seed=seed)
    result = fit(InMemorySource(theta, x, params), config)
    half = n_train // 2
    snr = scenario.noise.snr_db
    metadata = ModelMetadata(
        scenario_name=scenario.name, scenario_sha256=scenario.sha256, scenario_text=scenario.text,
        features=observation.features, reference_receiver=observation.reference_receiver,
        freqs_hz=observation.freqs_hz, receiver_depths_m=observation.receiver_depths_m,
        snr_db_range=None if snr is None else (snr.low, snr.high),
        typicality=fit_typicality([x[:half]], [x[half:]]), param_names=scenario.param_names,
        param_units=scenario.prior.units, param_long_names=tuple(p.long_name for p in scenario.prior.params),
        training_data={"note": "random features, one epoch: timing only"})
    return save_model(root / "model.pt", result.model, config, result.history, metadata=metadata.to_record())


def build_recording(root: Path, scenario, duration_s: float, sample_rate_hz: float) -> Path:
    """A synthetic recording at the scenario's nominal parameters (real engine)."""
    from acoustic_inv.synth import synthesize, write_synthetic

    synthetic = synthesize(scenario, scenario.nominal_theta(), duration_s=duration_s, sample_rate_hz=sample_rate_hz,
                           snr_db=20.0, seed=0)
    return write_synthetic(root / "rec.wav", synthetic)


def _command() -> list[str]:
    script = Path(sys.executable).with_name("acoustic-inv")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "acoustic_inv.cli"]


def time_command(model: Path, recording: Path, out: Path, n: int, n_params: int) -> dict:
    """One run of `acoustic-inv invert`: seconds to the last table row and to the exit."""
    args = [*_command(), "invert", "--model", str(model), str(recording), "--samples", str(n),
            "--out", str(out), "--seed", "0"]
    start = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    to_table = None
    rows_left = None
    for line in process.stdout:
        if rows_left is None and line.startswith("parameter"):
            rows_left = n_params + 1  # the dashes, then one row per parameter
        elif rows_left is not None and rows_left > 0:
            rows_left -= 1
            if rows_left == 0:
                to_table = time.perf_counter() - start
    stderr = process.stderr.read() if process.stderr else ""
    code = process.wait()
    total = time.perf_counter() - start
    if code != 0 or to_table is None:
        raise RuntimeError(f"acoustic-inv invert failed (exit {code}): {stderr.strip()}")
    return {"to_table_s": to_table, "total_s": total}


def time_sampling(model: Path, recording: Path, n: int, repeats: int) -> dict:
    """In-process: 10,000 draws for one observation, and the whole invert (draws + summary)."""
    import torch

    from acoustic_inv.posterior import Posterior
    from acoustic_inv.recordings import read_recording
    from acoustic_inv.tonals import extract_tonals

    posterior = Posterior.load(model)
    estimate = extract_tonals(read_recording(recording), posterior.freqs_hz)
    prepared = posterior.prepare(estimate)
    default_threads = torch.get_num_threads()
    out: dict = {"draws": n, "repeats": repeats}
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        posterior.model.sample(prepared.x, 100, seed=0)  # warm-up
        sample_s, invert_s = [], []
        for k in range(repeats):
            start = time.perf_counter()
            posterior.model.sample(prepared.x, n, seed=k)
            sample_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            posterior.invert(estimate, n=n, seed=k)
            invert_s.append(time.perf_counter() - start)
        out[f"threads_{threads}"] = {
            "sample_s_median": statistics.median(sample_s), "sample_s_min": min(sample_s),
            "draws_per_s": n / statistics.median(sample_s),
            "invert_s_median": statistics.median(invert_s), "invert_s_min": min(invert_s)}
    torch.set_num_threads(default_threads)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="swellex96", help="scenario name or path (default swellex96)")
    parser.add_argument("-n", type=int, default=10_000, help="posterior draws (default 10000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed command runs after the first (default 5)")
    parser.add_argument("--duration", type=float, default=60.0, help="recording length, s (default 60)")
    parser.add_argument("--sample-rate", type=float, default=1500.0, help="recording rate, Hz (default 1500)")
    parser.add_argument("--model", default=None,
                        help="model file to time (default: the shipped default model); 'train': a one-epoch cINN")
    parser.add_argument("--out", default=str(HERE / "results" / "invert.json"))
    args = parser.parse_args(argv)

    from acoustic_inv.datasets import versions
    from acoustic_inv.observation import ObservationModel
    from acoustic_inv.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="acoustic-inv-bench-") as tmp:
        root = Path(tmp)
        if args.model == "train":
            model = build_model(root, scenario)
            described = {"architecture": "cinn (default TrainConfig)",
                         "trained": "one epoch on random features (timing only)"}
        else:
            from acoustic_inv.checkpoint import load_model
            from acoustic_inv.posterior import DEFAULT_MODEL_PATH

            model = Path(args.model) if args.model is not None else Path(DEFAULT_MODEL_PATH)
            described = {"architecture": load_model(model).architecture, "path": str(model),
                         "trained": "shipped default model" if args.model is None else "given model file"}
        recording = build_recording(root, scenario, args.duration, args.sample_rate)
        n_params = len(scenario.param_names)
        n_features = ObservationModel.from_scenario(scenario).n_features
        first = time_command(model, recording, root / "post.nc", args.n, n_params)
        runs = [time_command(model, recording, root / "post.nc", args.n, n_params) for _ in range(args.repeats)]
        sampling = time_sampling(model, recording, args.n, args.repeats)
        model_mb = model.stat().st_size / 1e6
        recording_mb = recording.stat().st_size / 1e6
    to_table = [r["to_table_s"] for r in runs]
    total = [r["total_s"] for r in runs]
    result = {
        "benchmark": "invert",
        "scenario": scenario.name,
        "n_draws": args.n,
        "model": {**described, "n_features": n_features, "n_params": n_params, "size_mb": model_mb},
        "recording": {"duration_s": args.duration, "sample_rate_hz": args.sample_rate,
                      "channels": len(scenario.array.receiver_depths_m), "tones": list(scenario.freqs_hz),
                      "format": "WAV float32 + sidecar", "size_mb": recording_mb},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_before": list(load_before), "load_average_after": list(os.getloadavg())},
        "command": {
            "first_run": first,
            "runs": len(runs),
            "to_table_s_median": statistics.median(to_table), "to_table_s_min": min(to_table),
            "to_table_s_max": max(to_table),
            "total_s_median": statistics.median(total), "total_s_min": min(total), "total_s_max": max(total),
        },
        "sampling": sampling,
        "goal": {"to_table_s": f"< {GOAL_S:g}", "met_by_median": statistics.median(to_table) < GOAL_S},
        "notes": ("to_table_s counts process start (interpreter, imports of numpy/scipy/xarray/torch), reading "
                  "the recording, loading and checking the model, tonal extraction, 10,000 draws and the "
                  "summary; total_s adds writing post.nc and post.json (no --check). Wall-clock "
                  "times grow with the machine's load (see load_average)."),
        "versions": versions(),
        "python": sys.version.split()[0],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_out, out)
    command = result["command"]
    print(f"{scenario.name}: {args.n} draws, load average {load_before[0]:.1f} on {os.cpu_count()} cpus")
    print(f"  acoustic-inv invert, start to table: median {command['to_table_s_median']:.2f} s "
          f"(min {command['to_table_s_min']:.2f}, max {command['to_table_s_max']:.2f}; first run "
          f"{first['to_table_s']:.2f} s); to exit: median {command['total_s_median']:.2f} s")
    for key, value in sampling.items():
        if key.startswith("threads_"):
            print(f"  sampling alone, {key.split('_')[1]} thread(s): median {value['sample_s_median'] * 1e3:.0f} ms "
                  f"(min {value['sample_s_min'] * 1e3:.0f} ms) for {args.n} draws; invert (draws + summary): "
                  f"median {value['invert_s_median'] * 1e3:.0f} ms")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Propagation-engine throughput: runs per second, serial and over 2 processes, and wrapper overhead.

Cases (the hot path of dataset generation, one ``propagation.pressure`` call per run):

* ``kraken``, ``krakenc``: SWellEx-96 (layered seabed, ``data/scenarios/swellex96.toml``), source 54 m,
  range 3 km, the 21-element VLA, the seven tones of the ``vina-gi`` scenario (49-148 Hz); KRAKENC
  on the five of them it solves (49, 79, 94, 112, 130 Hz: it fails at 64 and 148 Hz with KR0303).
* ``bellhop``, ``bellhop-fortran``: Pekeris (100 m of 1500 m/s water over 1700 m/s, 1.8 g/cm^3,
  0.5 dB/wavelength), source 30 m, range 1 km, a 21-element VLA 10-90 m, tones 1, 1.25, 1.6, 2 kHz.

For each engine: runs per second in one process and with 2 worker processes (spawned and warmed up
before timing), and the median time of our ``pressure()`` against the bare engine call on the same
case, interleaved to share the machine's load: ``pelagic.kraken.Case.from_dict(doc).run()`` with a
ready document (mode depths at the source and receivers only), or arlpy's
``create_env2d`` + ``compute_transmission_loss(model=...)`` per tone. Overhead = wrapper / bare - 1
(goal: under 10 %).

Usage::

    python benchmarks/propagation.py            # about 3 minutes on 2 idle cores
    python benchmarks/propagation.py --quick    # fewer repetitions
    python benchmarks/propagation.py --engines kraken bellhop

Writes ``benchmarks/results/propagation.json`` (atomically) and prints the same numbers.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path and its own name would shadow the
# `propagation` package: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import numpy as np  # noqa: E402

RESULTS = _HERE / "results" / "propagation.json"
SWELLEX_VLA_M = [94.125, 99.755, 105.38, 111.00, 116.62, 122.25, 127.88, 139.12, 144.74, 150.38, 155.99,
                 161.62, 167.26, 172.88, 178.49, 184.12, 189.76, 195.38, 200.99, 206.62, 212.25]
VINA_TONES_HZ = [49.0, 64.0, 79.0, 94.0, 112.0, 130.0, 148.0]
PEKERIS_VLA_M = list(np.linspace(10.0, 90.0, 21))
PEKERIS_TONES_HZ = [1000.0, 1250.0, 1600.0, 2000.0]


def case_for(engine: str) -> dict:
    """The benchmark case of an engine (plain data, so it pickles to workers)."""
    if engine.startswith("kraken"):
        # pelagic's KRAKENC stops on this case at 64 Hz, and at 148 Hz after lower tones (KR0303,
        # complex secant did not converge): it gets the tones it solves
        tones = [49.0, 79.0, 94.0, 112.0, 130.0] if engine == "krakenc" else VINA_TONES_HZ
        return {"engine": engine, "env": "swellex96", "source_depth_m": 54.0, "receiver_depths_m": SWELLEX_VLA_M,
                "range_m": 3000.0, "freqs_hz": tones}
    return {"engine": engine, "env": "pekeris", "source_depth_m": 30.0, "receiver_depths_m": PEKERIS_VLA_M,
            "range_m": 1000.0, "freqs_hz": PEKERIS_TONES_HZ}


def environment(name: str):
    from propagation.environment import (Environment, HalfSpace, SoundSpeedProfile,
                                         db_per_wavelength_to_db_per_m_khz)
    from propagation.io import load_environment

    if name == "swellex96":
        return load_environment(_ROOT / "data" / "scenarios" / "swellex96.toml")
    return Environment(100.0, SoundSpeedProfile.isovelocity(1500.0),
                       HalfSpace(1700.0, 1.8, db_per_wavelength_to_db_per_m_khz(0.5, 1700.0)), name="Pekeris")


def run_case(case: dict) -> float:
    """One wrapped run; returns its wall time (s)."""
    import propagation

    env = environment(case["env"])
    start = time.perf_counter()
    propagation.pressure(env, case["source_depth_m"], case["receiver_depths_m"], case["range_m"],
                         case["freqs_hz"], engine=case["engine"])
    return time.perf_counter() - start


def _warm(case: dict) -> int:
    run_case(case)
    time.sleep(0.5)  # keep this worker busy so that the other one takes the next warm-up task
    return os.getpid()


def bare_call(case: dict):
    """A zero-argument callable running the bare engine on the case, built outside the timing."""
    from propagation.backends import get_engine

    env = environment(case["env"])
    engine = get_engine(case["engine"])
    depths = np.unique(case["receiver_depths_m"])
    freqs = tuple(case["freqs_hz"])
    if case["engine"].startswith("kraken"):
        import pelagic
        import pelagic.kraken

        options = engine.resolve_options({}, "pressure")
        meshes, _ = engine._meshes(env, freqs, options)
        doc = engine.document(env, freqs, case["source_depth_m"], depths, np.array([case["range_m"]]),
                              np.unique(np.r_[case["source_depth_m"], depths]), meshes, case["range_m"])
        return lambda: pelagic.kraken.Case.from_dict(doc).run()

    import arlpy.uwapm as pm
    from propagation.environment import db_per_m_khz_to_db_per_wavelength

    model = "pelagic" if case["engine"] == "bellhop" else "bellhop"
    if model == "pelagic":
        import pelagic.arlpy
        pelagic.arlpy.register()
    else:
        from propagation.backends.bellhop import find_bellhop
        os.environ["PATH"] = f"{find_bellhop().resolve().parent}{os.pathsep}{os.environ['PATH']}"
        os.environ["GFORTRAN_ERROR_BACKTRACE"] = "0"
    hs = env.halfspace

    def call():
        for f in freqs:
            aenv = pm.create_env2d(
                frequency=f, soundspeed=float(env.ssp.speed_mps[0]), soundspeed_interp=pm.linear,
                depth=env.water_depth_m, bottom_soundspeed=hs.sound_speed_mps,
                bottom_density=1000.0 * hs.density_g_cm3,
                bottom_absorption=db_per_m_khz_to_db_per_wavelength(hs.attenuation_db_per_m_khz, hs.sound_speed_mps),
                tx_depth=case["source_depth_m"], rx_depth=depths, rx_range=case["range_m"],
                min_angle=-80.0, max_angle=80.0, nbeams=0)
            pm.compute_transmission_loss(aenv, mode="coherent", model=model)

    return call


def measure(engine: str, serial_runs: int, parallel_runs: int, pairs: int) -> dict:
    case = case_for(engine)
    run_case(case)  # imports, caches
    serial = [run_case(case) for _ in range(serial_runs)]
    serial_rate = serial_runs / sum(serial)

    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        pids = set(pool.map(_warm, [case, case]))
        start = time.perf_counter()
        list(pool.map(run_case, [case] * parallel_runs))
        parallel_rate = parallel_runs / (time.perf_counter() - start)

    bare = bare_call(case)
    bare()
    wrapped, raw = [], []
    for _ in range(pairs):  # interleaved: both see the same background load
        wrapped.append(run_case(case))
        start = time.perf_counter()
        bare()
        raw.append(time.perf_counter() - start)
    w, b = statistics.median(wrapped), statistics.median(raw)
    return {
        "case": {k: v for k, v in case.items() if k != "engine"},
        "serial_runs_per_s": round(serial_rate, 4),
        "serial_median_s": round(statistics.median(serial), 5),
        "parallel_2_workers_runs_per_s": round(parallel_rate, 4),
        "parallel_speedup": round(parallel_rate / serial_rate, 3),
        "parallel_distinct_workers_warmed": len(pids),
        "wrapper_median_s": round(w, 5),
        "bare_median_s": round(b, 5),
        "wrapper_overhead_pct": round(100.0 * (w / b - 1.0), 2),
        "wrapper_min_s": round(min(wrapped), 5),
        "bare_min_s": round(min(raw), 5),
        "runs": {"serial": serial_runs, "parallel": parallel_runs, "pairs": pairs},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["kraken", "krakenc", "bellhop", "bellhop-fortran"])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import propagation

    available = {info.name: info for info in propagation.engines()}
    report = {
        "benchmark": "propagation",
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "load_average_start": os.getloadavg(),
                    "tmpdir": tempfile.gettempdir(),
                    "note": ("engines run single-threaded; a 2-worker speed-up near 2 needs 2 idle cores. "
                             "BELLHOP through arlpy writes and reads files in the temporary directory on "
                             "every run: stalls of a busy disk show up there (a tmpfs TMPDIR avoids them)")},
        "engines": {},
    }
    for engine in args.engines:
        info = available.get(engine)
        if info is None or not info.available:
            report["engines"][engine] = {"skipped": info.detail if info else "unknown engine"}
            print(f"{engine}: skipped ({report['engines'][engine]['skipped']})")
            continue
        heavy = engine.startswith("kraken")
        reps = (2, 4, 3) if args.quick else ((4, 8, 7) if heavy else (10, 20, 15))
        result = measure(engine, *reps)
        result["engine_version"] = info.version
        report["engines"][engine] = result
        print(f"{engine:<16} serial {result['serial_runs_per_s']:8.3f} runs/s   2 workers "
              f"{result['parallel_2_workers_runs_per_s']:8.3f} runs/s (x{result['parallel_speedup']:.2f})   "
              f"wrapper {result['wrapper_median_s'] * 1e3:9.2f} ms vs bare {result['bare_median_s'] * 1e3:9.2f} ms "
              f"({result['wrapper_overhead_pct']:+.1f} %)", flush=True)
    report["machine"]["load_average_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=args.out.parent, suffix=".tmp", delete=False) as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    os.replace(handle.name, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

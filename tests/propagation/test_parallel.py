"""Runs spread over worker processes give bitwise the results of serial runs.

Dataset generation spreads ~10^5 engine calls over processes; any dependence on scheduling (shared
scratch files, global state, thread counts) would show here as a difference in the last bit.
"""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import propagation
from propagation.environment import Environment, HalfSpace, SoundSpeedProfile


def _cases(engine: str, n: int, seed: int) -> list[dict]:
    """Small Pekeris-type cases with varied parameters, fast enough for hundreds of runs."""
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n):
        depth = float(rng.uniform(60.0, 120.0))
        cases.append({
            "engine": engine,
            "water_depth_m": depth,
            "water_speed_mps": float(rng.uniform(1480.0, 1520.0)),
            "bottom": (float(rng.uniform(1600.0, 1900.0)), float(rng.uniform(1.4, 2.0)), float(rng.uniform(0.0, 0.5))),
            "source_depth_m": float(rng.uniform(5.0, depth - 5.0)),
            "receiver_depths_m": np.sort(rng.uniform(1.0, depth - 1.0, size=5)),
            "range_m": float(rng.uniform(500.0, 3000.0 if engine == "kraken" else 1500.0)),
            # BELLHOP runs once per tone (and through files, via arlpy): one tone keeps it fast
            "freqs_hz": [float(f) for f in rng.uniform(40.0, 120.0, size=2 if engine == "kraken" else 1)],
            # accuracy is not tested here: a coarse KRAKEN mesh keeps the runs short
            "options": {"mesh_scale": 0.25} if engine.startswith("kraken") else {},
        })
    return cases


def _run(case: dict) -> np.ndarray:
    env = Environment(case["water_depth_m"], SoundSpeedProfile.isovelocity(case["water_speed_mps"]),
                      HalfSpace(*case["bottom"]), name="parallel test")
    return propagation.pressure(env, case["source_depth_m"], case["receiver_depths_m"], case["range_m"],
                                case["freqs_hz"], engine=case["engine"], **case["options"]).values


def _spread(cases: list[dict]) -> list[np.ndarray]:
    # spawn: fresh interpreters, as on macOS/Windows and in job schedulers; nothing inherited.
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_run, cases, chunksize=10))


def _assert_bitwise_equal(serial: list[np.ndarray], parallel: list[np.ndarray]) -> None:
    assert len(serial) == len(parallel)
    for a, b in zip(serial, parallel):
        assert a.dtype == b.dtype == np.complex128 and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


def test_200_runs_over_two_processes_equal_serial_runs_bitwise():
    kraken, bellhop = _cases("kraken", 170, seed=1), _cases("bellhop", 30, seed=2)
    cases = [c for pair in zip(kraken[:30], bellhop) for c in pair] + kraken[30:]  # mixed chunks
    serial = [_run(case) for case in cases]
    parallel = _spread(cases)
    _assert_bitwise_equal(serial, parallel)
    # the cases differ from one another (a constant result would pass trivially)
    assert len({a.tobytes() for a in serial}) == len(cases)


@pytest.mark.bellhop
def test_fortran_bellhop_runs_over_two_processes_equal_serial_runs_bitwise(requires_bellhop):
    cases = _cases("bellhop-fortran", 20, seed=3)
    serial = [_run(case) for case in cases]
    _assert_bitwise_equal(serial, _spread(cases))

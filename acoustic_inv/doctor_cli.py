"""``acoustic-inv doctor``: versions, engines found, and a one-second self-test against Pekeris.

The self-test runs each available engine on a small Pekeris waveguide (100 m of 1500 m/s water over a
1700 m/s, 1.8 g/cm^3 half-space, 100 Hz, source 30 m, receivers 10-90 m at 2 km) and compares its
transmission loss with the analytic mode sum of :mod:`propagation.pekeris`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys
import time

import numpy as np

# dB tolerances of the self-test: modes are accurate to a few hundredths of a dB here; beams are an
# approximation whose interference nulls shift slightly, so BELLHOP is judged on the median.
_TOLERANCE_DB = {"kraken": 0.5, "krakenc": 0.5, "bellhop": 1.0, "bellhop-fortran": 1.0}

_PACKAGES = ("acoustic-inv", "numpy", "scipy", "xarray", "torch", "zuko", "arlpy", "pelagic", "h5netcdf",
             "matplotlib", "dask", "distributed")


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def self_test(engine: str) -> tuple[bool, str]:
    """Runs one engine on the Pekeris case; returns (passed, one-line summary)."""
    import propagation
    from propagation.environment import (Environment, HalfSpace, SoundSpeedProfile,
                                         db_per_wavelength_to_db_per_m_khz)
    from propagation.pekeris import PekerisWaveguide

    env = Environment(100.0, SoundSpeedProfile.isovelocity(1500.0),
                      HalfSpace(1700.0, 1.8, db_per_wavelength_to_db_per_m_khz(0.5, 1700.0)),
                      name="doctor Pekeris")
    depths = np.arange(10.0, 91.0, 10.0)
    freq_hz, zs, r = 100.0, 30.0, 2000.0
    start = time.perf_counter()
    try:
        p = propagation.pressure(env, zs, depths, r, [freq_hz], engine=engine)
    except Exception as error:  # the doctor reports every failure instead of stopping at the first
        return False, f"{engine}: FAILED to run: {str(error).splitlines()[0]}"
    seconds = time.perf_counter() - start
    tl = -20.0 * np.log10(np.abs(p.values[0]))
    ref = PekerisWaveguide.from_environment(env).transmission_loss_db(freq_hz, zs, depths, [r])[:, 0]
    err = np.abs(tl - ref)
    stat = float(np.median(err)) if engine.startswith("bellhop") else float(err.max())
    what = "median" if engine.startswith("bellhop") else "max"
    ok = stat <= _TOLERANCE_DB.get(engine, 1.0)
    return ok, (f"{engine}: {'ok' if ok else 'FAILED'}: TL {what} |error| {stat:.3f} dB against the "
                f"analytic Pekeris solution ({seconds:.2f} s)")


def run(args: argparse.Namespace) -> int:
    import propagation

    print(f"acoustic-inv {_version('acoustic-inv')} on Python {platform.python_version()} "
          f"({sys.executable})")
    for name in _PACKAGES[1:]:
        print(f"  {name:<12} {_version(name)}")
    print("engines:")
    infos = propagation.engines()
    for info in infos:
        state = "available" if info.available else "NOT available"
        print(f"  {info.name:<16} {state:<14} {info.version or '':<10} {info.detail}")
    if args.no_self_test:
        return 0
    print("self-test (Pekeris waveguide, 100 Hz, 2 km):")
    failed = 0
    for info in infos:
        if not info.available:
            continue
        ok, line = self_test(info.name)
        failed += not ok
        print("  " + line)
    if failed:
        print(f"doctor: {failed} engine(s) failed the self-test", file=sys.stderr)
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor", help="versions, engines and a self-test against the analytic Pekeris solution",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-self-test", action="store_true", help="only list versions and engines")
    parser.set_defaults(func=run)

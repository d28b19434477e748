"""BELLHOP beam tracing through arlpy's stock environment and compute API.

Two engines share everything but the program that traces the beams:

* ``"bellhop"``: pelagic's in-process Rust BELLHOP, registered in arlpy as model ``'pelagic'``
  (``pelagic.arlpy.register()``).
* ``"bellhop-fortran"``: the Acoustics Toolbox ``bellhop.exe``, arlpy's model ``'bellhop'``. The binary is
  looked up in ``$ACOUSTIC_INV_BELLHOP``, then ``PATH``, then ``<sys.prefix>/bin`` (where
  ``scripts/install_bellhop.sh`` puts it).

Choices made here:

* **Bottom.** BELLHOP takes one water medium over a half-space: environments with sediment layers are
  refused (:class:`~propagation.errors.UnsupportedEnvironmentError`). The attenuation is converted to
  arlpy's dB per wavelength at the half-space speed; the bottom density is divided by the water density,
  since arlpy's input format fixes water at 1 g/cm^3 and only the ratio enters the reflection.
* **Water.** Sound speed linear between profile points (``'C'``), as in the KRAKEN case. arlpy always
  asks for Thorp volume attenuation in the water (``'T'``), which the normal-mode engines do not
  include: about 0.003 dB/km at 100 Hz, 0.01 at 300 Hz, 0.06 at 1 kHz.
* **Beams.** Geometric hat beams (arlpy's run type ``'C'``, coherent), launched between
  ``-max_angle_deg`` and ``+max_angle_deg`` (default 80 degrees, wider than any bottom-trapped ray);
  ``beams = 0`` (the default) lets BELLHOP choose the count from frequency, range and the angular span
  (at least 300). On the Pekeris acceptance case (100 m, 1500/1700 m/s, 200 Hz, 2 km) that default is
  converged: 1000 to 10000 beams change TL by under 0.02 dB, and BELLHOP lies within 1 dB of the
  analytic mode sum.
* **Phase.** BELLHOP's field has the package convention already (phase ``exp(-i k r)``, same sign as
  KRAKEN's), so it is returned unchanged. Arrival amplitudes are converted so that
  ``sum(amplitude * exp(-2j pi f delay))`` reproduces that field (see :class:`ArrivalSet`).
* **Failures.** arlpy prints BELLHOP's fatal error and returns None; here every failure raises
  :class:`~propagation.errors.EngineError` with the ``.prt`` listing as ``details``. Each Fortran run works
  in its own temporary directory (shared file names swap results between concurrent runs), with
  ``GFORTRAN_ERROR_BACKTRACE=0``, and always names its arlpy model (``model=None`` would launch a probe
  run of the binary first). Because PATH and stdout are process-wide, Fortran runs are serialized within
  one process; run processes in parallel.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import importlib.util
import io
import os
import shutil
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from propagation.backends.base import ArrivalSet, Engine, EngineInfo, Option, int_in, positive_float
from propagation.environment import Environment, db_per_m_khz_to_db_per_wavelength
from propagation.errors import EngineError, EngineNotFoundError, UnsupportedEnvironmentError

ENV_VAR = "ACOUSTIC_INV_BELLHOP"
_FORTRAN_LOCK = threading.Lock()

_OPTIONS = {
    "beams": Option(0, int_in(0, 1_000_000), "number of beams; 0 lets BELLHOP choose"),
    "max_angle_deg": Option(80.0, positive_float(0.0, 89.9), "launch angles from -max to +max, degrees"),
}


def find_bellhop() -> Path:
    """The ``bellhop.exe`` to run.

    Raises:
        EngineNotFoundError: naming the places searched.
    """
    given = os.environ.get(ENV_VAR)
    if given:
        path = Path(given).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise EngineNotFoundError(f"${ENV_VAR} = {given!r} is not an executable file")
    found = shutil.which("bellhop.exe")
    if found:
        return Path(found)
    path = Path(sys.prefix) / "bin" / "bellhop.exe"
    if path.is_file() and os.access(path, os.X_OK):
        return path
    raise EngineNotFoundError(
        f"bellhop.exe not found: ${ENV_VAR} is unset, it is not on PATH and not in {path.parent} "
        "(install it with `bash scripts/install_bellhop.sh`)")


def _arlpy():
    import arlpy.uwapm as pm

    return pm


def arlpy_environment(engine: str, env: Environment, freq_hz: float, source_depth_m: float,
                      receiver_depths_m: np.ndarray, ranges_m: np.ndarray, beams: int,
                      max_angle_deg: float) -> dict[str, Any]:
    """The arlpy 2-D environment dictionary for one frequency.

    Raises:
        UnsupportedEnvironmentError: for an environment with sediment layers.
    """
    if env.layers:
        raise UnsupportedEnvironmentError(
            f"{engine}: the environment has {len(env.layers)} sediment layer(s), but BELLHOP models the "
            "seabed as one half-space below the water; use engine 'kraken' for layered seabeds")
    z, c = env.water_ssp()
    if np.all(c == c[0]):
        ssp: Any = float(c[0])
    else:
        if z.size < 4:  # arlpy wants at least 4 points; extra points on the same lines change nothing
            fine = np.union1d(z, np.linspace(0.0, env.water_depth_m, 4))
            z, c = fine, np.interp(fine, z, c)
        ssp = np.column_stack([z, c])
    hs = env.halfspace
    pm = _arlpy()
    return pm.create_env2d(
        name=env.name.replace("'", "")[:70] or "environment",
        frequency=freq_hz,
        soundspeed=ssp,
        soundspeed_interp=pm.linear,
        depth=env.water_depth_m,
        bottom_soundspeed=hs.sound_speed_mps,
        bottom_density=1000.0 * hs.density_g_cm3 / env.water_density_g_cm3,
        bottom_absorption=db_per_m_khz_to_db_per_wavelength(hs.attenuation_db_per_m_khz, hs.sound_speed_mps),
        tx_depth=source_depth_m,
        rx_depth=receiver_depths_m if receiver_depths_m.size > 1 else float(receiver_depths_m[0]),
        rx_range=ranges_m if ranges_m.size > 1 else float(ranges_m[0]),
        min_angle=-max_angle_deg,
        max_angle=max_angle_deg,
        nbeams=beams,
    )


class _BellhopBase(Engine):
    capabilities = frozenset({"pressure", "tl_field", "arrivals"})
    options = _OPTIONS

    def _compute(self, task: str, arlpy_envs: list[dict[str, Any]]) -> list[Any]:
        """Runs arlpy's compute function for ``task`` on each environment (one BELLHOP run each)."""
        raise NotImplementedError

    def _fields(self, env, source_depth_m, freqs_hz, depths_m, ranges_m, options) -> np.ndarray:
        """Complex pressure, shape (n_freq, n_depth, n_range)."""
        envs = [arlpy_environment(self.name, env, f, source_depth_m, depths_m, ranges_m, options["beams"],
                                  options["max_angle_deg"]) for f in freqs_hz]
        out = np.empty((len(freqs_hz), depths_m.size, ranges_m.size), dtype=np.complex128)
        for i, frame in enumerate(self._compute("coherent", envs)):
            values = np.asarray(frame.values, dtype=np.complex128)
            if values.shape != out.shape[1:]:
                raise EngineError(self.name, f"BELLHOP returned a {values.shape} field for "
                                             f"{depths_m.size} depths x {ranges_m.size} ranges")
            out[i] = values
        return out

    def pressure(self, env, source_depth_m, receiver_depths_m, range_m, freqs_hz, **options):
        return self._fields(env, source_depth_m, freqs_hz, receiver_depths_m, np.array([range_m]), options)[:, :, 0]

    def tl_field(self, env, source_depth_m, freq_hz, depths_m, ranges_m, **options):
        return self._fields(env, source_depth_m, (freq_hz,), depths_m, ranges_m, options)[0]

    def arrivals(self, env, source_depth_m, receiver_depth_m, range_m, freq_hz, **options):
        aenv = arlpy_environment(self.name, env, freq_hz, source_depth_m, np.array([receiver_depth_m]),
                                 np.array([range_m]), options["beams"], options["max_angle_deg"])
        (frame,) = self._compute("arrivals", [aenv])
        delay = frame["time_of_arrival"].to_numpy(dtype=float)
        omega = 2.0 * np.pi * freq_hz
        # arlpy gives A exp(-i phase) exp(-i omega tau): undo its delay factor, then conjugate and negate
        # into the convention of BELLHOP's own field (checked in the tests).
        amplitude = -np.conj(frame["arrival_amplitude"].to_numpy(dtype=np.complex128) * np.exp(1j * omega * delay))
        order = np.argsort(delay, kind="stable")
        return ArrivalSet(
            delay_s=delay[order],
            amplitude=amplitude[order],
            departure_angle_deg=frame["angle_of_departure"].to_numpy(dtype=float)[order],
            arrival_angle_deg=frame["angle_of_arrival"].to_numpy(dtype=float)[order],
            surface_bounces=frame["surface_bounces"].to_numpy(dtype=np.int64)[order],
            bottom_bounces=frame["bottom_bounces"].to_numpy(dtype=np.int64)[order],
        )


class PelagicBellhopEngine(_BellhopBase):
    """BELLHOP run in-process by pelagic, through arlpy's model ``'pelagic'``."""

    name = "bellhop"

    def __init__(self) -> None:
        self._version: str | None = None
        self._registered = False

    def info(self) -> EngineInfo:
        missing = [p for p in ("pelagic", "arlpy") if importlib.util.find_spec(p) is None]
        if missing:
            return EngineInfo(self.name, False, None, f"Python package(s) not installed: {', '.join(missing)}")
        if self._version is None:
            import pelagic

            self._version = f"pelagic {pelagic.__version__}"
            self._detail = (f"BELLHOP in-process via arlpy {importlib.metadata.version('arlpy')}, checked "
                            f"against {pelagic.compatibility_reference}")
        return EngineInfo(self.name, True, self._version, self._detail)

    def _compute(self, task, arlpy_envs):
        import pelagic
        import pelagic.arlpy

        pm = _arlpy()
        if not self._registered:
            pelagic.arlpy.register()
            self._registered = True
        call = pm.compute_arrivals if task == "arrivals" else pm.compute_transmission_loss
        kwargs = {} if task == "arrivals" else {"mode": task}
        results = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pelagic.PelagicWarning)
            try:
                for arlpy_env in arlpy_envs:
                    results.append(call(arlpy_env, model="pelagic", **kwargs))
            except pelagic.PelagicError as error:
                raise EngineError(self.name, f"pelagic {type(error).__name__} [{error.code}]",
                                  details=str(error)) from None
        notes = [str(w.message) for w in caught if issubclass(w.category, pelagic.PelagicWarning)]
        for w in caught:
            if not issubclass(w.category, pelagic.PelagicWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if notes:
            raise EngineError(self.name, "pelagic warned about the case", details="\n".join(notes))
        if any(result is None for result in results):
            raise EngineError(self.name, "arlpy returned no result")
        return results


class FortranBellhopEngine(_BellhopBase):
    """The Acoustics Toolbox ``bellhop.exe``, through arlpy's model ``'bellhop'``."""

    name = "bellhop-fortran"

    def __init__(self) -> None:
        self._infos: dict[Path, EngineInfo] = {}

    def info(self) -> EngineInfo:
        if importlib.util.find_spec("arlpy") is None:
            return EngineInfo(self.name, False, None, "Python package 'arlpy' is not installed")
        try:
            path = find_bellhop()
        except EngineNotFoundError as error:
            return EngineInfo(self.name, False, None, str(error))
        if path not in self._infos:  # the binary may change with $ACOUSTIC_INV_BELLHOP
            self._infos[path] = self._describe(path)
        return self._infos[path]

    def _describe(self, path: Path) -> EngineInfo:
        real = path.resolve()
        # The install script keeps the release in the path (…/aubellhop-0.2.1/…); the binary has no
        # version flag.
        release = next((part for part in real.parts if part.startswith("aubellhop-")), "version unknown")
        return EngineInfo(self.name, True, f"bellhop.exe ({release})",
                          f"Fortran BELLHOP via arlpy {importlib.metadata.version('arlpy')}: {real}")

    def _compute(self, task, arlpy_envs):
        pm = _arlpy()
        call = pm.compute_arrivals if task == "arrivals" else pm.compute_transmission_loss
        kwargs = {} if task == "arrivals" else {"mode": task}
        bin_dir = _bin_dir(find_bellhop())
        work = Path(tempfile.mkdtemp(prefix="acoustic-inv-bellhop-"))
        results = []
        try:
            printed = io.StringIO()
            with _FORTRAN_LOCK, _environ(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                                         GFORTRAN_ERROR_BACKTRACE="0"), contextlib.redirect_stdout(printed):
                for i, arlpy_env in enumerate(arlpy_envs):
                    base = work / f"run{i}"
                    result = call(arlpy_env, model="bellhop", fname_base=str(base), **kwargs)
                    if result is None:
                        raise _failure(self.name, base, printed.getvalue())
                    results.append(result)
            return results
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _failure(engine: str, base: Path, printed: str) -> EngineError:
    """The error for a run that produced no result, with BELLHOP's .prt listing as details."""
    prt = base.with_suffix(".prt")
    listing = prt.read_text(errors="replace") if prt.exists() else ""
    reason = "BELLHOP failed"
    if "*** FATAL ERROR ***" in listing:
        after = listing.split("*** FATAL ERROR ***", 1)[1].strip().splitlines()
        reason += ": " + " ".join(line.strip() for line in after[:2] if line.strip())
    elif not listing.strip():
        reason += " without a .prt listing"
    return EngineError(engine, reason, details=listing or printed)


_BIN_DIRS: dict[Path, Path] = {}


def _bin_dir(binary: Path) -> Path:
    """A directory holding the binary under the name arlpy runs, ``bellhop.exe``.

    The binary's own directory when it already has that name; otherwise a private directory with a
    symbolic link, made once per process and removed at exit.
    """
    if binary.name == "bellhop.exe":
        return binary.parent
    real = binary.resolve()
    if real not in _BIN_DIRS:
        directory = Path(tempfile.mkdtemp(prefix="acoustic-inv-bellhop-bin-"))
        (directory / "bellhop.exe").symlink_to(real)
        atexit.register(shutil.rmtree, directory, True)
        _BIN_DIRS[real] = directory
    return _BIN_DIRS[real]


@contextlib.contextmanager
def _environ(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

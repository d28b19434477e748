"""Reference posteriors on a parameter grid, with the exact likelihood of :mod:`acoustic_inv.likelihood`.

For a scenario with two free environment parameters (``vina-gi``: water depth and sediment speed) the
posterior can be computed without any network: run the real propagation engine once on a regular grid
of cell centres over the prior box (:func:`simulate_grid`, resumable, stored in netCDF), then for any
observation evaluate the exact SNR-marginal likelihood at every grid point (a few vectorised array
operations) and multiply by the prior density (:meth:`ReferenceGrid.posterior`). These posteriors are
the ground truth the amortised networks are scored against.

Discretisation. Each cell's posterior mass is taken as likelihood x prior density at its centre times
its volume (midpoint rule), and :meth:`GridPosterior.sample` draws a cell by mass and a point uniformly
inside it. That is accurate when the posterior spans many cells: :attr:`GridPosterior.resolved` asks
for at least ``min_cells`` (30) cells holding 99 % of the mass and, along every axis, a posterior
standard deviation of at least ``min_resolution`` (2) mass-weighted cell widths
(:meth:`GridPosterior.resolution`). At that resolution the mean and standard deviation are within about
1 % and the quantiles within about 0.03 standard deviations of a grid ten times finer (tested on an
analytic field); at resolution 1.2 quantiles were off by up to 0.15 standard deviations.

Refinement (real engine runs; :meth:`ReferenceGrid.posterior`). Matched-field posteriors can be far
narrower than any affordable grid (``vina-gi`` at 20 dB: a few centimetres of water depth), and then the
grid is not even a reliable guide to where the peak is: the likelihood at a cell centre is dominated by
how far the centre happens to lie from the narrow ridge, so the truth's cell can rank tenth or twentieth.
An unresolved posterior is therefore refined in three steps:

1. *Mode search*: Nelder-Mead on the exact log likelihood (one engine run per evaluation), started from
   up to ``max_starts`` grid cells within ``candidate_nats`` of the best log mass that touch no other
   start. Each distinct optimum within ``candidate_nats`` of the best gets a standard deviation per
   axis from the curvature of the log likelihood (finite differences with steps adapted until the drop
   is 0.5-8 nats, cross term included); a mode whose Laplace mass is more than 12 nats below the best
   one's is dropped.
2. *Local grids*: a regular grid of about ``refine_budget`` cells over the mode +- 6 standard deviations
   (clipped to the prior box), grown (twice at most) on any side whose edge cells come within 10 nats
   of the grid's best. The local grid replaces the grid cells under it; a grid cell only partly under
   it keeps its outside part as rectangles (at most 2 per axis), each evaluated at its own centre
   (the parent's centre may be close to the mode, so its likelihood would put the mode's mass in the
   tails). A weaker mode whose box overlaps a stronger one's is left to that box.
3. *Subdivision*: while still unresolved (at most ``max_rounds`` rounds), the cells of the 99 % set and
   every cell touching one are split into ``k x k`` (about ``refine_budget`` new cells, ``k >= 2``).

Cost on ``vina-gi`` (measured with its 24/12 points-per-wavelength mesh, 0.084 CPU s per engine run):
a 41 x 41 grid takes 1681 runs (141 CPU s); its posteriors at 13-25 dB SNR hold 99 % of their mass in
2-9 cells (water-depth standard deviations of 2-8 cm against 0.88 m cells), so every observation is
refined, with 800-1300 runs (60-90 CPU s). Refined posteriors matched a brute-force 40 x 40 grid over
the mode (mean and quantiles within 0.005 m and 0.05 m/s). The posterior records the engine runs it
spent (:attr:`GridPosterior.engine_calls`).

Restrictions: exactly two prior parameters, neither a source-position parameter (the source range
makes the likelihood oscillate on a scale of metres over a prior of kilometres, which no regular grid
resolves), ``unit_pressure`` features and complex Gaussian noise.

File layout (one netCDF file ``PATH``; while running, finished blocks of points live in
``PATH.parts/`` and are merged into ``PATH`` at the end; a killed run continues from them):

- dimensions named after the two parameters (cell centres, with ``units``, ``long_name``, ``low``,
  ``high``, ``cell_width``), ``freq`` and ``receiver``;
- ``pressure_real``/``pressure_imag(p1, p2, freq, receiver)``: the noise-free complex pressure, NaN
  where the engine failed;
- ``failed(p1, p2)`` (0/1) and ``error(p1, p2)`` (the engine's error text, empty on success);
- ``engine_cpu_s(p1, p2)``: CPU time of the engine call at each point.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import xarray as xr
from scipy import special

from acoustic_inv.datasets import engine_version, pool_context, utc_now, versions, worker_init
from acoustic_inv.fileio import atomic_write_json, atomic_write_netcdf
from acoustic_inv.errors import ConfigError, DataError
from acoustic_inv.likelihood import (
    DEFAULT_SNR_NODES,
    SnrQuadrature,
    bartlett_power,
    log_likelihood_from_c2,
    snr_quadrature,
    unit_vectors_from_features,
)
from acoustic_inv.observation import ObservationModel
from acoustic_inv.scenario import PARAMETERS, Scenario, load_scenario, scenario_from_text
from acoustic_inv.simulation import Runner, Simulator
from propagation.errors import EngineNotFoundError, PropagationError, UnsupportedEnvironmentError

FORMAT = "acoustic-inv-reference-grid"
FORMAT_VERSION = 1
_ENGINE = "netcdf4"
_PARTS_SUFFIX = ".parts"
_SETTINGS = "settings.json"
_DEFAULT_BLOCK = 50
_CONFIG_ERRORS = (EngineNotFoundError, UnsupportedEnvironmentError)

#: Refinement defaults of :meth:`ReferenceGrid.posterior`.
DEFAULT_MIN_CELLS = 30
# Posterior standard deviation over cell width required along every axis: at 2, quantiles of the
# cell posterior are within about 0.03 standard deviations of a 10x finer grid (0.15 at 1.2).
DEFAULT_MIN_RESOLUTION = 2.0
DEFAULT_REFINE_BUDGET = 600
DEFAULT_MAX_ROUNDS = 2
DEFAULT_MAX_STARTS = 3
DEFAULT_CANDIDATE_NATS = 40.0
# Local grids span the mode +- this many standard deviations (from the curvature at the mode).
_BOX_SIGMAS = 6.0
# A local grid whose inner edge holds a cell within this of its best log mass is grown.
_EDGE_NATS = 10.0
_MAX_BOX_GROWTH = 2
# Modes whose Laplace mass is this far below the best one's get no local grid.
_MODE_NATS = 12.0
# Nelder-Mead stops at this step (in grid cells) or change of log likelihood (nats).
_XATOL_CELLS = 1e-3
_FATOL_NATS = 0.01


# ---------------------------------------------------------------------------------------------------
# The grid
# ---------------------------------------------------------------------------------------------------


def check_grid_scenario(scenario: Scenario) -> None:
    """Raises :class:`ConfigError` unless the scenario suits a grid reference posterior.

    It must have exactly two prior parameters, neither a source-position parameter, ``unit_pressure``
    features and complex Gaussian noise.
    """
    names = scenario.prior.names
    if len(names) != 2:
        raise ConfigError(f"scenario {scenario.name!r} has {len(names)} prior parameter(s) {list(names)}: "
                          "a grid reference posterior needs exactly 2")
    geometry = [n for n in names if PARAMETERS[n].geometry]
    if geometry:
        raise ConfigError(f"scenario {scenario.name!r}: prior parameter {geometry[0]!r} moves the source; "
                          "a grid reference posterior needs a fixed source geometry")
    if scenario.observation.features != "unit_pressure":
        raise ConfigError(f"scenario {scenario.name!r}: observation.features = "
                          f"{scenario.observation.features!r}: the exact likelihood supports "
                          "'unit_pressure' features only")
    if scenario.noise.snr_db is None:
        raise ConfigError(f"scenario {scenario.name!r}: noise.model = {scenario.noise.model!r}: the exact "
                          "likelihood needs complex Gaussian noise")


@dataclass(frozen=True)
class GridSpec:
    """A regular grid of cells over the prior box.

    Attributes:
        names: Parameter names, shape (d,).
        units: Their units, shape (d,).
        low: Lower bounds of the box, shape (d,), in each parameter's units.
        high: Upper bounds, shape (d,).
        n_per_axis: Cells along each axis, shape (d,).
    """

    names: tuple[str, ...]
    units: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    n_per_axis: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """Cells per axis."""
        return tuple(self.n_per_axis)

    @property
    def n_points(self) -> int:
        """Total number of cells."""
        return int(np.prod(self.n_per_axis))

    @property
    def cell_width(self) -> np.ndarray:
        """Cell width along each axis, shape (d,), in each parameter's units."""
        return (np.asarray(self.high) - np.asarray(self.low)) / np.asarray(self.n_per_axis)

    def centres(self, axis: int) -> np.ndarray:
        """Cell centres along one axis, shape (n_per_axis[axis],)."""
        width = self.cell_width[axis]
        return self.low[axis] + (np.arange(self.n_per_axis[axis]) + 0.5) * width

    def points(self) -> np.ndarray:
        """Every cell centre, shape (n_points, d), in C order (last axis fastest)."""
        mesh = np.meshgrid(*[self.centres(i) for i in range(len(self.names))], indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=-1)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (resume checks)."""
        return {"names": list(self.names), "units": list(self.units), "low": list(self.low),
                "high": list(self.high), "n_per_axis": list(self.n_per_axis)}


def grid_spec(scenario: Scenario, n_per_axis: int | Sequence[int] | None = None,
              spacing: float | Sequence[float] | None = None) -> GridSpec:
    """The grid over a scenario's prior box, by cells per axis or by cell spacing.

    Args:
        scenario: The scenario (its prior's bounds are the box).
        n_per_axis: Cells per axis (one number for all, or one per parameter), >= 2.
        spacing: Largest cell width per axis (one number for all, or one per parameter), in each
            parameter's units; the cell count is rounded up. Exactly one of the two must be given.

    Raises:
        ConfigError: naming the argument and value.
    """
    prior = scenario.prior
    d = len(prior)
    if (n_per_axis is None) == (spacing is None):
        raise ConfigError("grid: give exactly one of n_per_axis and spacing")
    low, high = prior.low, prior.high
    if n_per_axis is not None:
        counts = np.broadcast_to(np.asarray(n_per_axis), (d,)) if np.ndim(n_per_axis) == 0 else np.asarray(n_per_axis)
        if counts.shape != (d,):
            raise ConfigError(f"n_per_axis = {n_per_axis!r}: expected one count or {d} counts")
        for c in counts:
            if isinstance(c, (bool, np.bool_)) or not float(c).is_integer() or int(c) < 2:
                raise ConfigError(f"n_per_axis = {n_per_axis!r}: expected integers >= 2")
        counts = [int(c) for c in counts]
    else:
        widths = np.broadcast_to(np.asarray(spacing, dtype=float), (d,)) if np.ndim(spacing) == 0 \
            else np.asarray(spacing, dtype=float)
        if widths.shape != (d,) or not np.all(np.isfinite(widths)) or np.any(widths <= 0.0):
            raise ConfigError(f"spacing = {spacing!r}: expected one positive width or {d} widths")
        counts = [max(2, int(math.ceil((h - lo) / w - 1e-9))) for lo, h, w in zip(low, high, widths)]
    return GridSpec(prior.names, prior.units, tuple(float(v) for v in low), tuple(float(v) for v in high),
                    tuple(counts))


# ---------------------------------------------------------------------------------------------------
# Engine evaluation (in-process or a spawn pool)
# ---------------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """Noise-free pressure at some parameter vectors.

    Attributes:
        pressure: Shape (n, n_freq, n_receiver), complex; NaN where the engine failed.
        errors: One string per point: empty on success, else the engine's error text.
        cpu_s: CPU time of each engine call, shape (n,), s.
    """

    pressure: np.ndarray
    errors: list[str]
    cpu_s: np.ndarray

    @property
    def failed(self) -> np.ndarray:
        """Shape (n,), bool."""
        return np.array([bool(e) for e in self.errors], dtype=bool)


_SIMULATORS: dict[tuple[str, Any], Simulator] = {}


def _simulator(scenario: Scenario, runner: Runner | None) -> Simulator:
    key = (scenario.sha256, runner)
    simulator = _SIMULATORS.get(key)
    if simulator is None:
        simulator = _SIMULATORS[key] = Simulator(scenario, runner)
    return simulator


def evaluate_points(scenario: Scenario, theta: np.ndarray, runner: Runner | None = None,
                    on_point: Callable[[], None] | None = None) -> Evaluation:
    """Runs the scenario's engine (with its options) at each parameter vector, in this process.

    Args:
        scenario: The scenario.
        theta: Parameter vectors, shape (n, d), in each parameter's units.
        runner: Forward model replacing :func:`propagation.pressure` (tests only).
        on_point: Called after each point (progress).

    Returns:
        An :class:`Evaluation`; engine failures are recorded, not raised.

    Raises:
        ConfigError: when the engine is missing or cannot represent the scenario at all.
    """
    simulator = _simulator(scenario, runner)
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    n_freq, n_rec = simulator.observation.n_freq, simulator.observation.n_receiver
    pressure = np.full((len(theta), n_freq, n_rec), np.nan + 1j * np.nan)
    errors = [""] * len(theta)
    cpu = np.zeros(len(theta))
    for i, t in enumerate(theta):
        start = time.process_time()
        try:
            pressure[i] = simulator.run_engine(t)
        except _CONFIG_ERRORS as error:
            raise ConfigError(f"scenario {scenario.name!r}: {str(error).splitlines()[0]}") from None
        except PropagationError as error:
            errors[i] = f"{type(error).__name__}: {error}"
        cpu[i] = time.process_time() - start
        if on_point is not None:
            on_point()
    return Evaluation(pressure, errors, cpu)


# ---------------------------------------------------------------------------------------------------
# simulate_grid: resumable, blockwise
# ---------------------------------------------------------------------------------------------------


@dataclass
class GridReport:
    """What a :func:`simulate_grid` call did.

    Attributes:
        path: The grid file.
        n_points: Cells in the grid.
        n_failed: Cells whose engine run failed.
        points_computed: Engine runs made by this call (0 when the file was already complete).
        points_resumed: Points found already computed in ``PATH.parts``.
        elapsed_s: Wall time of this call, s.
        engine_cpu_s: CPU time of the engine calls made by this call, s.
    """

    path: Path
    n_points: int
    n_failed: int
    points_computed: int
    points_resumed: int
    elapsed_s: float
    engine_cpu_s: float


def _parts_dir(path: Path) -> Path:
    return path.with_name(path.name + _PARTS_SUFFIX)


def _block_path(parts: Path, start: int) -> Path:
    return parts / f"block-{start:09d}.nc"


def _settings(scenario: Scenario, spec: GridSpec, block_size: int) -> dict[str, Any]:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "scenario": scenario.name,
            "scenario_sha256": scenario.sha256, "grid": spec.to_dict(), "block_size": int(block_size)}


def _check_same(path: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    for key in ("format", "scenario", "scenario_sha256", "grid"):
        if old.get(key) != new[key]:
            what = "the scenario text" if key == "scenario_sha256" else key
            raise DataError(f"{path} was made with another {what} ({old.get(key)!r}, this run: "
                            f"{new[key]!r}); choose another --out, or pass --force to overwrite it")


def _write_block(parts: Path, start: int, result: Evaluation) -> None:
    n = len(result.errors)
    ds = xr.Dataset({
        "index": (("point",), np.arange(start, start + n, dtype=np.int64), {"long_name": "flat cell index"}),
        "pressure_real": (("point", "freq", "receiver"), result.pressure.real),
        "pressure_imag": (("point", "freq", "receiver"), result.pressure.imag),
        "error": (("point",), np.array(result.errors, dtype=object)),
        "engine_cpu_s": (("point",), result.cpu_s, {"units": "s"}),
    })
    atomic_write_netcdf(_block_path(parts, start), ds)


def _grid_dataset(scenario: Scenario, spec: GridSpec, pressure: np.ndarray, errors: np.ndarray,
                  cpu_s: np.ndarray) -> xr.Dataset:
    shape = spec.shape
    dims = spec.names
    prior = scenario.prior
    coords: dict[str, Any] = {}
    for i, name in enumerate(spec.names):
        p = prior.params[prior.index(name)]
        coords[name] = (name, spec.centres(i), {
            "units": p.units, "long_name": f"{p.long_name} (cell centre)", "low": spec.low[i],
            "high": spec.high[i], "cell_width": float(spec.cell_width[i])})
    coords["freq"] = ("freq", np.asarray(scenario.freqs_hz), {"units": "Hz", "long_name": "tone frequency"})
    coords["receiver"] = ("receiver", np.asarray(scenario.array.receiver_depths_m),
                          {"units": "m", "long_name": "receiver depth"})
    grid_dims = (*dims, "freq", "receiver")
    long = "noise-free complex pressure, {} part, re a unit source at 1 m (NaN: engine failed)"
    failed = np.array([bool(e) for e in errors], dtype=np.int8)
    data = {
        "pressure_real": (grid_dims, pressure.real.reshape(*shape, *pressure.shape[1:]),
                          {"units": "1", "long_name": long.format("real")}),
        "pressure_imag": (grid_dims, pressure.imag.reshape(*shape, *pressure.shape[1:]),
                          {"units": "1", "long_name": long.format("imaginary")}),
        "failed": (dims, failed.reshape(shape), {"units": "1", "long_name": "engine failed at the cell centre"}),
        "error": (dims, np.asarray(errors, dtype=object).reshape(shape), {"long_name": "engine error text"}),
        "engine_cpu_s": (dims, cpu_s.reshape(shape), {"units": "s", "long_name": "engine CPU time"}),
    }
    attrs = {
        "title": f"acoustic-inv reference grid, scenario {scenario.name}",
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "scenario": scenario.text, "scenario_name": scenario.name, "scenario_sha256": scenario.sha256,
        "grid": json.dumps(spec.to_dict()),
        "engine": scenario.engine.name, "engine_version": engine_version(scenario.engine.name),
        "engine_options": json.dumps(scenario.engine.options_dict, sort_keys=True),
        "features": scenario.observation.features,
        "reference_receiver": int(scenario.observation.reference_receiver),
        "n_failed": int(failed.sum()),
        "versions": json.dumps(versions(), sort_keys=True),
        "created": utc_now(),
        "Conventions": "CF-1.8",
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _read_attrs(path: Path) -> dict[str, Any]:
    try:
        with xr.open_dataset(path, engine=_ENGINE) as ds:
            attrs = dict(ds.attrs)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable netCDF file: {error}") from None
    if attrs.get("format") != FORMAT:
        raise DataError(f"{path}: not an acoustic-inv reference grid (format {attrs.get('format')!r})")
    return attrs


def simulate_grid(scenario: Scenario | str | os.PathLike[str], out_path: str | os.PathLike[str],
                  n_per_axis: int | Sequence[int] | None = None, *,
                  spacing: float | Sequence[float] | None = None, workers: int = 1,
                  progress: bool = True, force: bool = False, block_size: int = _DEFAULT_BLOCK,
                  runner: Runner | None = None) -> GridReport:
    """Runs the engine at every cell centre of a grid over the prior box and writes the grid file.

    Resumable: points are computed in blocks, each written atomically to ``PATH.parts/`` as it
    finishes; a rerun of the same call computes only the missing blocks, then merges everything into
    ``PATH`` (atomically) and removes ``PATH.parts``. A complete ``PATH`` of the same scenario and grid
    is returned as is.

    Args:
        scenario: Scenario, scenario name or path (see :func:`check_grid_scenario`).
        out_path: The grid file to write (netCDF).
        n_per_axis: Cells per axis (or ``spacing``; see :func:`grid_spec`).
        spacing: Largest cell width per axis, in each parameter's units.
        workers: Worker processes (1: compute in this process).
        progress: Show a tqdm progress bar (with ETA) on stderr.
        force: Replace an existing grid or unfinished run made with other settings.
        block_size: Points per block file (a resumed run keeps the block size it started with).
        runner: Forward model replacing :func:`propagation.pressure` (tests only); must be a
            module-level function to reach worker processes.

    Returns:
        A :class:`GridReport`.

    Raises:
        ConfigError: bad arguments or scenario. DataError: ``out_path`` holds something else, or a
        grid or run with other settings (without ``force``).
    """
    started = time.perf_counter()
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    check_grid_scenario(scenario)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ConfigError(f"workers = {workers!r}: expected a positive integer")
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ConfigError(f"block_size = {block_size!r}: expected a positive integer")
    spec = grid_spec(scenario, n_per_axis, spacing)
    path = Path(out_path)
    parts = _parts_dir(path)
    settings = _settings(scenario, spec, block_size)

    if path.exists():
        if path.is_dir():
            raise DataError(f"{path}: is a directory; expected a grid file path")
        attrs = _read_attrs(path)
        old = {"format": attrs.get("format"), "scenario": attrs.get("scenario_name"),
               "scenario_sha256": attrs.get("scenario_sha256"), "grid": json.loads(attrs.get("grid", "{}"))}
        if force:
            path.unlink()
        else:
            _check_same(path, old, settings)
            return GridReport(path, spec.n_points, int(attrs.get("n_failed", 0)), 0, spec.n_points,
                              time.perf_counter() - started, 0.0)
    if parts.exists():
        try:
            old = json.loads((parts / _SETTINGS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise DataError(f"{parts}: exists but holds no readable {_SETTINGS}; remove it or choose "
                            "another --out") from None
        if force:
            shutil.rmtree(parts)
        else:
            _check_same(parts, old, settings)
            block_size = int(old["block_size"])
            settings = old
    if not parts.exists():
        parts.mkdir(parents=True)
        atomic_write_json(parts / _SETTINGS, settings)
    for stale in parts.glob(".*.tmp"):
        stale.unlink(missing_ok=True)

    theta = spec.points()
    starts = list(range(0, spec.n_points, block_size))
    todo = [s for s in starts if not _block_path(parts, s).is_file()]
    todo_set = set(todo)
    resumed = sum(min(block_size, spec.n_points - s) for s in starts if s not in todo_set)

    from tqdm import tqdm

    bar = tqdm(total=spec.n_points, initial=resumed, unit="point", disable=not progress,
               desc=f"reference grid {scenario.name}", dynamic_ncols=True, smoothing=0.05, file=sys.stderr)
    computed, cpu_total, failed_now = 0, 0.0, 0
    try:
        blocks = _evaluate_blocks(scenario, theta, todo, block_size, runner, workers, bar.update)
        for start, result in blocks:
            _write_block(parts, start, result)
            computed += len(result.errors)
            cpu_total += float(result.cpu_s.sum())
            failed_now += int(result.failed.sum())
            if failed_now:
                bar.set_postfix(failed=failed_now, refresh=False)
    finally:
        bar.close()

    pressure, errors, cpu = _merge_blocks(parts, spec, scenario)
    atomic_write_netcdf(path, _grid_dataset(scenario, spec, pressure, errors, cpu))
    shutil.rmtree(parts, ignore_errors=True)
    n_failed = int(sum(1 for e in errors if e))
    return GridReport(path, spec.n_points, n_failed, computed, resumed, time.perf_counter() - started,
                      cpu_total)


def _evaluate_blocks(scenario: Scenario, theta: np.ndarray, starts: list[int], block_size: int,
                     runner: Runner | None, workers: int, on_points: Callable[[int], None]):
    """Yields (block start, Evaluation) for the given blocks of the flat point list."""
    if not starts:
        return
    if workers == 1:
        for start in starts:
            yield start, evaluate_points(scenario, theta[start:start + block_size], runner,
                                         on_point=lambda: on_points(1))
        return
    executor = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=pool_context(),
                                                      initializer=worker_init)
    try:
        futures = {executor.submit(evaluate_points, scenario, theta[s:s + block_size], runner): s
                   for s in starts}
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            on_points(len(result.errors))
            yield futures[future], result
    except BaseException:
        # Interrupted or failed: stop the workers now; finished blocks are already on disk.
        for process in list(getattr(executor, "_processes", {}).values()):
            process.terminate()
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def _merge_blocks(parts: Path, spec: GridSpec, scenario: Scenario) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = spec.n_points
    shape = (n, len(scenario.freqs_hz), len(scenario.array.receiver_depths_m))
    pressure = np.full(shape, np.nan + 1j * np.nan)
    errors = np.full(n, "", dtype=object)
    cpu = np.full(n, np.nan)
    seen = np.zeros(n, dtype=bool)
    for file in sorted(parts.glob("block-*.nc")):
        with xr.open_dataset(file, engine=_ENGINE) as ds:
            index = ds["index"].values
            pressure[index] = ds["pressure_real"].values + 1j * ds["pressure_imag"].values
            errors[index] = [str(e) if isinstance(e, str) else "" for e in ds["error"].values]
            cpu[index] = ds["engine_cpu_s"].values
            seen[index] = True
    if not np.all(seen):
        raise DataError(f"{parts}: {int((~seen).sum())} point(s) missing after the run; run again to resume")
    return pressure, errors, cpu


# ---------------------------------------------------------------------------------------------------
# Posteriors
# ---------------------------------------------------------------------------------------------------


@dataclass
class GridPosterior:
    """A posterior as masses on rectangular cells (a regular grid, locally refined).

    Attributes:
        names: Parameter names, shape (d,).
        units: Their units, shape (d,).
        centre: Cell centres, shape (n_cells, d), in each parameter's units.
        half_width: Cell half-widths, shape (n_cells, d), same units.
        log_likelihood: SNR-marginal log likelihood at each centre, shape (n_cells,) (``-inf`` where
            the engine failed), relative to the uniform measure on the features' projective spaces.
        log_mass: Normalised log posterior mass of each cell, shape (n_cells,).
        n_failed_cells: Cells with no engine result (given zero mass).
        refine_rounds: Subdivision rounds made (step 3 of the refinement).
        engine_calls: Engine runs spent on refinement (mode search, curvature, local grids, rounds).
        resolved: Whether at least ``min_cells`` cells hold 99 % of the mass and the posterior standard
            deviation is at least ``min_resolution`` cell widths along every axis (:meth:`resolution`).
        min_cells: The cell count asked for.
        modes: The modes the refinement put local grids on, shape (n_modes, d) (none without
            refinement).
    """

    names: tuple[str, ...]
    units: tuple[str, ...]
    centre: np.ndarray
    half_width: np.ndarray
    log_likelihood: np.ndarray
    log_mass: np.ndarray
    n_failed_cells: int = 0
    refine_rounds: int = 0
    engine_calls: int = 0
    resolved: bool = True
    min_cells: int = DEFAULT_MIN_CELLS
    modes: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))

    @property
    def mass(self) -> np.ndarray:
        """Posterior mass of each cell, shape (n_cells,), summing to 1."""
        return np.exp(self.log_mass)

    @property
    def log_volume(self) -> np.ndarray:
        """Log volume of each cell, shape (n_cells,), in the product of the parameters' units."""
        return np.sum(np.log(2.0 * self.half_width), axis=-1)

    def cells_holding(self, level: float = 0.99) -> int:
        """Fewest cells that together hold ``level`` of the mass (a measure of resolution)."""
        if not 0.0 < level <= 1.0:
            raise ConfigError(f"level = {level!r}: expected a probability in (0, 1]")
        sorted_mass = np.sort(self.mass)[::-1]
        return int(min(len(sorted_mass), np.searchsorted(np.cumsum(sorted_mass), level * (1 - 1e-12)) + 1))

    @property
    def effective_cells(self) -> float:
        """``1 / sum(mass^2)``: the number of equally weighted cells with the same spread of mass."""
        return float(1.0 / np.sum(self.mass ** 2))

    def mean(self) -> np.ndarray:
        """Posterior mean, shape (d,)."""
        return np.sum(self.mass[:, None] * self.centre, axis=0)

    def std(self) -> np.ndarray:
        """Posterior standard deviation, shape (d,) (cells taken as uniform boxes)."""
        mean = self.mean()
        second = np.sum(self.mass[:, None] * ((self.centre - mean) ** 2 + self.half_width ** 2 / 3.0), axis=0)
        return np.sqrt(np.maximum(second, 0.0))

    def resolution(self) -> np.ndarray:
        """Posterior standard deviation over the mass-weighted cell width, per axis, shape (d,).

        Below 1 the posterior is not resolved along that axis (a single cell gives 0.29).
        """
        width = np.sum(self.mass[:, None] * 2.0 * self.half_width, axis=0)
        return self.std() / width

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draws from the posterior: a cell by its mass, then a point uniformly inside it.

        Args:
            n: Number of draws.
            rng: Random stream.

        Returns:
            Shape (n, d), in each parameter's units.
        """
        cells = rng.choice(len(self.log_mass), size=int(n), p=self.mass / self.mass.sum())
        jitter = rng.uniform(-1.0, 1.0, size=(int(n), self.centre.shape[1]))
        return self.centre[cells] + jitter * self.half_width[cells]

    def cell_of(self, theta: np.ndarray) -> int:
        """Index of the cell holding ``theta`` (shape (d,)); -1 outside every cell."""
        theta = np.asarray(theta, dtype=float)
        inside = np.all(np.abs(theta - self.centre) <= self.half_width * (1 + 1e-12), axis=-1)
        hits = np.flatnonzero(inside)
        return int(hits[0]) if len(hits) else -1

    def credible_level(self, theta: np.ndarray) -> float:
        """Smallest highest-posterior-density level whose region holds ``theta`` (shape (d,)).

        The mass of the cells of higher density than ``theta``'s cell plus half its own mass; 1 outside
        the grid. ``theta`` lies in the HPD region of level ``a`` when this is below ``a``: over
        observations simulated from the prior, it is uniform on [0, 1] for a correct posterior.
        """
        cell = self.cell_of(theta)
        if cell < 0:
            return 1.0
        log_density = self.log_mass - self.log_volume
        mass = self.mass
        denser = log_density > log_density[cell]
        return float(np.sum(mass[denser]) + 0.5 * mass[cell])


def _normalise(log_mass: np.ndarray) -> np.ndarray:
    finite = np.isfinite(log_mass)
    if not np.any(finite):
        raise DataError("the likelihood is zero (or the engine failed) at every grid cell")
    return log_mass - special.logsumexp(log_mass[finite])


def _touching(centre: np.ndarray, half: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Indices of all cells whose boxes touch or overlap one of the ``chosen`` cells (chosen included)."""
    touch = np.zeros(len(centre), dtype=bool)
    for i in chosen:
        gap = np.abs(centre - centre[i]) - (half + half[i])
        touch |= np.all(gap <= 1e-9 * (half + half[i]), axis=-1)
    return np.flatnonzero(touch)


def _subdivide(centre: np.ndarray, half: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Splits each cell into ``k^d`` equal sub-cells; returns their centres and half-widths."""
    d = centre.shape[1]
    offsets = (2.0 * np.arange(k) + 1.0) / k - 1.0  # in units of the half-width
    grid = np.stack(np.meshgrid(*([offsets] * d), indexing="ij"), axis=-1).reshape(-1, d)
    new_centre = (centre[:, None, :] + grid[None, :, :] * half[:, None, :]).reshape(-1, d)
    new_half = np.repeat(half / k, k ** d, axis=0)
    return new_centre, new_half


@dataclass
class _Cells:
    """Rectangular cells: centres (n, d), half-widths (n, d) and the log likelihood at each centre (n,)."""

    centre: np.ndarray
    half: np.ndarray
    loglik: np.ndarray

    def select(self, mask: np.ndarray) -> "_Cells":
        return _Cells(self.centre[mask], self.half[mask], self.loglik[mask])

    def join(self, other: "_Cells") -> "_Cells":
        return _Cells(np.concatenate([self.centre, other.centre]), np.concatenate([self.half, other.half]),
                      np.concatenate([self.loglik, other.loglik]))

    def cut(self, low: np.ndarray, high: np.ndarray) -> tuple["_Cells", np.ndarray, np.ndarray]:
        """The cells with the box [low, high] cut out.

        Returns:
            The cells entirely outside the box, then the centres and half-widths, shape (n, d), of the
            rectangles (at most 2 per axis and cell) that make up the outside parts of the cells partly
            inside it; their likelihood is still to be computed.
        """
        cell_low, cell_high = self.centre - self.half, self.centre + self.half
        overlap = np.all((cell_low < high) & (cell_high > low), axis=-1)
        pieces_low, pieces_high = [], []
        for i in np.flatnonzero(overlap):
            lo, hi = cell_low[i].copy(), cell_high[i].copy()
            for axis in range(len(lo)):
                if lo[axis] < low[axis]:
                    part_high = hi.copy()
                    part_high[axis] = low[axis]
                    pieces_low.append(lo.copy())
                    pieces_high.append(part_high)
                    lo[axis] = low[axis]
                if hi[axis] > high[axis]:
                    part_low = lo.copy()
                    part_low[axis] = high[axis]
                    pieces_low.append(part_low)
                    pieces_high.append(hi.copy())
                    hi[axis] = high[axis]
        d = self.centre.shape[1]
        p_low = np.array(pieces_low).reshape(-1, d)
        p_high = np.array(pieces_high).reshape(-1, d)
        return self.select(~overlap), 0.5 * (p_low + p_high), 0.5 * (p_high - p_low)


def _overlap(low: np.ndarray, high: np.ndarray, other_low: np.ndarray, other_high: np.ndarray) -> bool:
    """Whether two boxes share volume."""
    return bool(np.all((low < other_high) & (high > other_low)))


def _edge_mass(local: _Cells, low: np.ndarray, high: np.ndarray, box_low: np.ndarray,
               box_high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per axis, whether the lower / upper edge of a local grid (not on the prior bound) holds mass."""
    peak = np.max(local.loglik)
    heavy = local.loglik >= peak - _EDGE_NATS
    on_low = np.abs(local.centre - local.half - low) <= 1e-9 * local.half
    on_high = np.abs(local.centre + local.half - high) <= 1e-9 * local.half
    grow_low = np.any(on_low & heavy[:, None], axis=0) & (low > box_low)
    grow_high = np.any(on_high & heavy[:, None], axis=0) & (high < box_high)
    return grow_low, grow_high


class _Refiner:
    """Engine runs for one observation's refinement: mode search, curvature, local grids."""

    def __init__(self, grid: "ReferenceGrid", u: np.ndarray, workers: int, progress: bool) -> None:
        self.grid = grid
        self.u = u
        self.workers = workers
        self.progress = progress
        self.calls = 0
        self.low = grid.scenario.prior.low
        self.high = grid.scenario.prior.high
        self.scale = grid.spec.cell_width

    def log_likelihood(self, theta: np.ndarray, pool: bool = True) -> np.ndarray:
        """Runs the engine at ``theta`` (n, d); the log likelihood there, shape (n,) (-inf: failed)."""
        theta = np.atleast_2d(theta)
        if not len(theta):
            return np.empty(0)
        if pool:
            result = self.grid._run(theta, self.workers, self.progress)
        else:
            result = evaluate_points(self.grid.scenario, theta, self.grid.runner)
        self.calls += len(theta)
        return self.grid._log_likelihood(self.u, result.pressure, result.failed)

    def _one(self, v: np.ndarray) -> float:
        theta = self.low + np.clip(v, 0.0, (self.high - self.low) / self.scale) * self.scale
        return float(self.log_likelihood(theta[None], pool=False)[0])

    def find_modes(self, cells: _Cells, post: GridPosterior, max_starts: int, candidate_nats: float,
                   budget: int) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """Nelder-Mead from the best grid cells that touch no other start; returns the distinct modes
        within ``candidate_nats`` of the best as (theta (d,), log likelihood, standard deviation (d,))."""
        from scipy.optimize import minimize

        order = np.argsort(post.log_mass)[::-1]
        candidates = order[post.log_mass[order] >= post.log_mass[order[0]] - candidate_nats]
        starts: list[int] = []
        for c in candidates:
            if len(starts) == max_starts:
                break
            gap = np.abs(cells.centre[starts] - cells.centre[c]) - (cells.half[starts] + cells.half[c])
            if not np.any(np.all(gap <= 1e-9 * cells.half[c], axis=-1)):
                starts.append(int(c))
        upper = (self.high - self.low) / self.scale
        found = []
        for c in starts:
            v0 = (cells.centre[c] - self.low) / self.scale
            simplex = [v0]
            for axis in range(len(v0)):
                step = np.zeros_like(v0)
                step[axis] = 0.5 if v0[axis] + 0.5 <= upper[axis] else -0.5
                simplex.append(v0 + step)
            result = minimize(lambda v: -self._one(v), v0, method="Nelder-Mead",
                              bounds=list(zip(np.zeros_like(upper), upper)),
                              options={"initial_simplex": np.array(simplex), "xatol": _XATOL_CELLS,
                                       "fatol": _FATOL_NATS, "maxfev": max(20, budget // 2)})
            found.append((np.clip(result.x, 0.0, upper), -float(result.fun)))
        found.sort(key=lambda item: -item[1])
        modes: list[tuple[np.ndarray, float, np.ndarray]] = []
        best_mass = -np.inf
        for v, log_lik in found:
            if not np.isfinite(log_lik) or log_lik < found[0][1] - candidate_nats:
                continue
            theta = self.low + v * self.scale
            # The same mode reached from another start: inside a kept mode's box.
            if any(np.all(np.abs(theta - t) <= _BOX_SIGMAS * s) for t, _, s in modes):
                continue
            sigma = self._sigma(v, log_lik)
            # Laplace estimate of the mode's mass: a mode with a negligible share needs no grid.
            log_mass = log_lik + float(np.sum(np.log(sigma)))
            if log_mass < best_mass - _MODE_NATS:
                continue
            best_mass = max(best_mass, log_mass)
            modes.append((theta, log_lik, sigma))
        return modes

    def _sigma(self, v: np.ndarray, log_lik: float) -> np.ndarray:
        """Standard deviations (d,) from the curvature of the log likelihood at the mode ``v`` (cell
        units), by finite differences whose steps adapt until the drop is 0.5-8 nats."""
        d = len(v)
        upper = (self.high - self.low) / self.scale
        steps = np.full(d, 0.02)
        curvature = np.zeros((d, d))
        values = {}
        for axis in range(d):
            h = 0.02
            for _ in range(8):
                e = np.zeros(d)
                e[axis] = h
                plus = self._one(v + e) if v[axis] + h <= upper[axis] else None
                minus = self._one(v - e) if v[axis] - h >= 0.0 else None
                sides = [s for s in (plus, minus) if s is not None and np.isfinite(s)]
                drop = log_lik - float(np.mean(sides)) if sides else 0.0
                if 0.5 <= drop <= 8.0 or not sides or h > 4.0:
                    break
                h = h * 4.0 if drop < 0.5 else h / 4.0
            steps[axis] = h
            values[axis] = (plus, minus)
            curvature[axis, axis] = max(2.0 * drop, 1e-6) / h ** 2
        for i in range(d):
            for j in range(i + 1, d):
                e = np.zeros(d)
                e[i], e[j] = steps[i], steps[j]
                known = values[i] + values[j]
                if (np.all(v + e <= upper) and np.all(v - e >= 0.0)
                        and all(s is not None and np.isfinite(s) for s in known)):
                    both = self._one(v + e) + self._one(v - e)
                    single = sum(values[i]) + sum(values[j])
                    curvature[i, j] = curvature[j, i] = -(both - single + 2.0 * log_lik) / (2.0 * steps[i] * steps[j])
        try:
            covariance = np.linalg.inv(curvature)
            if np.any(np.diag(covariance) <= 0.0) or np.any(np.linalg.eigvalsh(curvature) <= 0.0):
                raise np.linalg.LinAlgError
        except np.linalg.LinAlgError:
            covariance = np.diag(1.0 / np.diag(curvature))
        return np.sqrt(np.diag(covariance)) * self.scale

    def local_grid(self, low: np.ndarray, high: np.ndarray, budget: int) -> _Cells:
        """A regular grid of about ``budget`` cells over [low, high], evaluated with the engine."""
        d = len(low)
        n = max(2, int(round(budget ** (1.0 / d))))
        half = (high - low) / (2 * n)
        axes = [low[i] + (2 * np.arange(n) + 1) * half[i] for i in range(d)]
        centre = np.stack([m.ravel() for m in np.meshgrid(*axes, indexing="ij")], axis=-1)
        return _Cells(centre, np.broadcast_to(half, centre.shape).copy(), self.log_likelihood(centre))


@dataclass
class ReferenceGrid:
    """A simulated grid (see :func:`simulate_grid`) ready to give posteriors of observations.

    Attributes:
        scenario: The scenario the grid was made with.
        spec: The grid.
        pressure: Noise-free pressure at the cell centres, shape (n_points, n_freq, n_receiver),
            complex, flat in C order of ``spec``; NaN where the engine failed.
        errors: Engine error text per point, shape (n_points,) (empty on success).
        runner: Forward model for refinement runs (None: the real engine; tests inject fakes).
        n_snr_nodes: SNR quadrature nodes.
    """

    scenario: Scenario
    spec: GridSpec
    pressure: np.ndarray
    errors: np.ndarray
    runner: Runner | None = None
    n_snr_nodes: int = DEFAULT_SNR_NODES
    observation: ObservationModel = field(init=False)
    quadrature: SnrQuadrature = field(init=False)

    def __post_init__(self) -> None:
        check_grid_scenario(self.scenario)
        self.observation = ObservationModel.from_scenario(self.scenario)
        expected = (self.spec.n_points, self.observation.n_freq, self.observation.n_receiver)
        self.pressure = np.asarray(self.pressure, dtype=complex)
        if self.pressure.shape != expected:
            raise DataError(f"pressure: expected shape {expected}, got {self.pressure.shape}")
        self.errors = np.asarray(self.errors, dtype=object)
        assert self.scenario.noise.snr_db is not None
        self.quadrature = snr_quadrature(self.scenario.noise.snr_db, self.n_snr_nodes)
        self._failed = ~np.all(np.isfinite(self.pressure), axis=(-2, -1))
        self._centre = self.spec.points()
        self._half = np.broadcast_to(self.spec.cell_width / 2.0, self._centre.shape).copy()

    @classmethod
    def open(cls, path: str | os.PathLike[str], runner: Runner | None = None,
             n_snr_nodes: int = DEFAULT_SNR_NODES) -> "ReferenceGrid":
        """Reads a grid file written by :func:`simulate_grid`.

        Raises:
            DataError: when ``path`` is not a complete reference grid.
        """
        path = Path(path)
        if not path.is_file():
            parts = _parts_dir(path)
            hint = f" (an unfinished run is in {parts}; run the same command again)" if parts.exists() else ""
            raise DataError(f"{path}: no such reference grid{hint}")
        _read_attrs(path)
        with xr.open_dataset(path, engine=_ENGINE) as ds:
            ds = ds.load()
        scenario = scenario_from_text(ds.attrs["scenario"], source=f"{path}:scenario",
                                      default_name=ds.attrs.get("scenario_name", "scenario"))
        grid = json.loads(ds.attrs["grid"])
        spec = GridSpec(tuple(grid["names"]), tuple(grid["units"]), tuple(grid["low"]), tuple(grid["high"]),
                        tuple(grid["n_per_axis"]))
        names = list(spec.names)
        pressure = (ds["pressure_real"] + 1j * ds["pressure_imag"]).transpose(*names, "freq", "receiver").values
        errors = ds["error"].transpose(*names).values.ravel()
        errors = np.array([e if isinstance(e, str) else "" for e in errors], dtype=object)
        return cls(scenario, spec, pressure.reshape(spec.n_points, *pressure.shape[len(names):]), errors,
                   runner=runner, n_snr_nodes=n_snr_nodes)

    @property
    def theta(self) -> np.ndarray:
        """Cell centres, shape (n_points, d), in each parameter's units (C order)."""
        return self._centre

    @property
    def n_failed(self) -> int:
        """Cells whose engine run failed."""
        return int(self._failed.sum())

    def unit_vectors(self, x: np.ndarray) -> np.ndarray:
        """The observation's per-tone unit vectors, shape (n_freq, n_receiver), from features (n_features,)."""
        x = np.asarray(x, dtype=float)
        if x.shape != (self.observation.n_features,):
            raise DataError(f"x: expected shape ({self.observation.n_features},), got {x.shape}")
        return unit_vectors_from_features(self.observation, x)

    def _log_likelihood(self, u: np.ndarray, pressure: np.ndarray, failed: np.ndarray) -> np.ndarray:
        c2 = bartlett_power(u[None], np.where(failed[:, None, None], 0.0, pressure))
        out = log_likelihood_from_c2(c2, self.observation.n_receiver, self.quadrature)
        return np.where(failed, -np.inf, out)

    def log_likelihood(self, x: np.ndarray) -> np.ndarray:
        """SNR-marginal log likelihood of features ``x`` (shape (n_features,)) at every cell centre.

        Returns:
            Shape (n_points,) in C order of the grid; ``-inf`` where the engine failed.
        """
        return self._log_likelihood(self.unit_vectors(x), self.pressure, self._failed)

    def _posterior(self, centre: np.ndarray, half: np.ndarray, loglik: np.ndarray, **info: Any) -> GridPosterior:
        log_prior = self.scenario.prior.log_prob(centre)
        log_volume = np.sum(np.log(2.0 * half), axis=-1)
        log_mass = _normalise(loglik + log_prior + log_volume)
        return GridPosterior(self.spec.names, self.spec.units, centre, half, loglik, log_mass, **info)

    def posterior(self, x: np.ndarray, *, refine: bool = True, min_cells: int = DEFAULT_MIN_CELLS,
                  refine_budget: int = DEFAULT_REFINE_BUDGET, max_rounds: int = DEFAULT_MAX_ROUNDS,
                  max_starts: int = DEFAULT_MAX_STARTS, candidate_nats: float = DEFAULT_CANDIDATE_NATS,
                  min_resolution: float = DEFAULT_MIN_RESOLUTION, workers: int = 1,
                  progress: bool = False) -> GridPosterior:
        """The posterior of one observation on the grid, refined locally where it is too narrow.

        Args:
            x: Features, shape (n_features,).
            refine: Refine an unresolved posterior (see :attr:`GridPosterior.resolved`) with engine runs,
                as the module docstring describes. Without it the grid posterior is returned as is.
            min_cells: Cells that must hold 99 % of the mass.
            min_resolution: Posterior standard deviation over cell width required along every axis
                (:meth:`GridPosterior.resolution`).
            refine_budget: Engine runs of one local grid or one subdivision round (about).
            max_rounds: Most subdivision rounds after the local grids.
            max_starts: Most mode searches (from grid cells that touch no other start).
            candidate_nats: Grid cells whose log mass is within this of the best start mode searches,
                and modes whose log likelihood is within this of the best get a local grid.
            workers: Worker processes for the local grids and subdivisions.
            progress: Progress bars for those runs.

        Returns:
            A :class:`GridPosterior`.
        """
        u = self.unit_vectors(x)
        cells = _Cells(self._centre, self._half, self._log_likelihood(u, self.pressure, self._failed))
        post = self._finish(cells, min_cells, min_resolution, 0, 0)
        if post.resolved or not refine:
            return post
        refiner = _Refiner(self, u, workers, progress)
        box_low, box_high = self.scenario.prior.low, self.scenario.prior.high
        # 1. Find the modes from the best grid cells, 2. put a local grid over each.
        modes = refiner.find_modes(cells, post, max_starts, candidate_nats, refine_budget)
        boxes: list[tuple[np.ndarray, np.ndarray]] = []
        for theta_mode, _, sigma in modes:
            low = np.maximum(theta_mode - _BOX_SIGMAS * sigma, box_low)
            high = np.minimum(theta_mode + _BOX_SIGMAS * sigma, box_high)
            # A weaker mode next to a stronger one is covered by the stronger one's grid.
            if any(_overlap(low, high, *box) for box in boxes):
                continue
            local = refiner.local_grid(low, high, refine_budget)
            for _ in range(_MAX_BOX_GROWTH):
                # Mass at an inner edge of the box means the box cut the mode off: grow it that way.
                grow_low, grow_high = _edge_mass(local, low, high, box_low, box_high)
                width = high - low
                new_low = np.where(grow_low, np.maximum(low - width, box_low), low)
                new_high = np.where(grow_high, np.minimum(high + width, box_high), high)
                if (np.array_equal(new_low, low) and np.array_equal(new_high, high)) or any(
                        _overlap(new_low, new_high, *box) for box in boxes):
                    break
                low, high = new_low, new_high
                local = refiner.local_grid(low, high, refine_budget)
            boxes.append((low, high))
            # The parts of grid cells left outside the box get their own engine runs: the likelihood at
            # the parent cell's centre may be that of the mode itself.
            outside, piece_centre, piece_half = cells.cut(low, high)
            pieces = _Cells(piece_centre, piece_half, refiner.log_likelihood(piece_centre))
            cells = outside.join(pieces).join(local)
        # 3. Split what is still too coarse.
        rounds = 0
        while True:
            post = self._finish(cells, min_cells, min_resolution, rounds, refiner.calls,
                                np.array([m[0] for m in modes]).reshape(-1, cells.centre.shape[1]))
            if post.resolved or rounds >= max_rounds:
                return post
            order = np.argsort(post.log_mass)[::-1]
            chosen = _touching(cells.centre, cells.half, order[:post.cells_holding(0.99)])
            d = cells.centre.shape[1]
            k = max(2, int(math.floor((refine_budget / len(chosen)) ** (1.0 / d))))
            new_centre, new_half = _subdivide(cells.centre[chosen], cells.half[chosen], k)
            new = _Cells(new_centre, new_half, refiner.log_likelihood(new_centre))
            keep = np.ones(len(cells.loglik), dtype=bool)
            keep[chosen] = False
            cells = cells.select(keep).join(new)
            rounds += 1

    def credible_level(self, posterior: GridPosterior, x: np.ndarray, theta: np.ndarray) -> float:
        """Smallest HPD level whose region holds ``theta``, with the exact density at ``theta``.

        :meth:`GridPosterior.credible_level` uses the density of ``theta``'s cell, which is coarse near
        a sharp peak; this runs the engine once at ``theta`` and compares the posterior density there
        with the cells' densities (the mass of the denser cells).

        Args:
            posterior: The posterior of ``x`` (from :meth:`posterior`).
            x: The observation's features, shape (n_features,).
            theta: The parameter vector, shape (d,), in each parameter's units.

        Returns:
            The level in [0, 1]; 1 outside the prior box or where the engine fails.
        """
        theta = np.asarray(theta, dtype=float)
        log_prior = float(self.scenario.prior.log_prob(theta))
        if not np.isfinite(log_prior):
            return 1.0
        result = evaluate_points(self.scenario, theta[None], self.runner)
        log_lik = float(self._log_likelihood(self.unit_vectors(x), result.pressure, result.failed)[0])
        if not np.isfinite(log_lik):
            return 1.0
        finite = np.isfinite(posterior.log_mass)
        log_prior_cells = self.scenario.prior.log_prob(posterior.centre[finite])
        # log Z from any cell: log_mass = loglik + log prior + log volume - log Z.
        log_z = float(np.median(posterior.log_likelihood[finite] + log_prior_cells
                                + posterior.log_volume[finite] - posterior.log_mass[finite]))
        log_density = log_lik + log_prior - log_z
        cell_density = posterior.log_mass - posterior.log_volume
        return float(np.sum(posterior.mass[cell_density > log_density]))

    def _finish(self, cells: "_Cells", min_cells: int, min_resolution: float, rounds: int, calls: int,
                modes: np.ndarray | None = None) -> GridPosterior:
        # The likelihood is finite wherever the engine ran, so -inf marks exactly the failures.
        d = cells.centre.shape[1]
        post = self._posterior(cells.centre, cells.half, cells.loglik,
                               n_failed_cells=int(np.sum(np.isneginf(cells.loglik))), refine_rounds=rounds,
                               engine_calls=calls, min_cells=min_cells,
                               modes=np.empty((0, d)) if modes is None else modes)
        post.resolved = bool(post.cells_holding(0.99) >= min_cells
                             and np.all(post.resolution() >= min_resolution))
        return post

    def _run(self, theta: np.ndarray, workers: int, progress: bool) -> Evaluation:
        from tqdm import tqdm

        bar = tqdm(total=len(theta), unit="point", disable=not progress, desc="refine", file=sys.stderr,
                   dynamic_ncols=True)
        pressure = np.empty((len(theta), self.observation.n_freq, self.observation.n_receiver), dtype=complex)
        errors = [""] * len(theta)
        cpu = np.zeros(len(theta))
        block = max(1, -(-len(theta) // max(1, 4 * workers)))
        try:
            starts = list(range(0, len(theta), block))
            for start, result in _evaluate_blocks(self.scenario, theta, starts, block, self.runner, workers,
                                                  bar.update):
                stop = start + len(result.errors)
                pressure[start:stop] = result.pressure
                errors[start:stop] = result.errors
                cpu[start:stop] = result.cpu_s
        finally:
            bar.close()
        return Evaluation(pressure, errors, cpu)

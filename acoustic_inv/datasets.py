"""Simulated datasets on disk: generation (resumable, local pool or Dask), reading, info and splits.

Layout of a dataset directory ``PATH``::

    PATH/meta.json              what was asked for and what was done (see below)
    PATH/scenario.toml          a copy of the scenario text
    PATH/chunks/chunk-NNNNNN.nc samples [N*chunk_size, (N+1)*chunk_size): the successful ones in the
                                root group, the failed ones in the group "failures"
    PATH/failures.nc            every failure of the dataset (written when generation finishes)

A chunk's root group holds, over the successful samples:

- ``theta(sample, param)`` float64: parameters; coordinate ``param`` = names, with ``param_units`` and
  ``param_long_name`` beside it and the units listed in ``theta.attrs["units"]`` in param order;
- ``x(sample, feature)`` float32: the observation features (:mod:`acoustic_inv.observation`);
- ``pressure_real``/``pressure_imag(sample, freq, receiver)`` float64: the noise-free complex pressure
  (:func:`open_dataset` and :func:`iter_chunks` return it as one complex ``pressure`` variable;
  netCDF has no portable complex type, so the parts are stored apart);
- ``snr_db(sample)``: the SNR drawn for the sample's noise;
- coordinate ``sample``: the global sample index.

``meta.json`` holds at least ``params`` (name, units, low, high per parameter), ``n_features``,
``scenario``, ``seed``, ``n_samples``, ``chunk_size`` and ``status`` (``running`` or ``complete``).

Generation is deterministic for a seed whatever the number of workers (each sample has its own random
stream, :func:`acoustic_inv.simulation.sample_rng`), resumable (finished chunks are written atomically
and never rewritten; a killed run continues where it stopped and loses at most the chunks in flight)
and never overwrites a finished dataset without ``force``.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import datetime as _dt
import functools
import importlib.metadata
import json
import math
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import xarray as xr

from acoustic_inv.errors import ConfigError, DataError, UserError
from acoustic_inv.fileio import atomic_write_bytes, atomic_write_json, atomic_write_netcdf
from acoustic_inv.observation import ObservationModel
from acoustic_inv.scenario import Scenario, load_scenario, scenario_from_text
from acoustic_inv.simulation import ChunkResult, Runner, Simulator

FORMAT = "acoustic-inv-dataset"
FORMAT_VERSION = 1
META = "meta.json"
SCENARIO_COPY = "scenario.toml"
CHUNK_DIR = "chunks"
FAILURES = "failures.nc"
_ENGINE = "netcdf4"

# Keys of meta.json that must match for a run to resume an existing directory.
_RESUME_KEYS = ("scenario", "scenario_sha256", "seed", "n_samples", "chunk_size")


# ---------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------


def chunk_path(path: Path, index: int) -> Path:
    """File of chunk ``index`` in the dataset at ``path``."""
    return Path(path) / CHUNK_DIR / f"chunk-{index:06d}.nc"


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (the ``created`` stamps of datasets and grids)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads ``meta.json`` of a dataset.

    Raises:
        DataError: when ``path`` is not a dataset directory or the file is unreadable.
    """
    meta_path = Path(path) / META
    if not meta_path.is_file():
        raise DataError(f"{path}: not an acoustic-inv dataset (no {META})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"{meta_path}: cannot read: {error}") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{meta_path}: format {meta.get('format')!r} is not {FORMAT!r}")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise DataError(f"{meta_path}: format_version {meta.get('format_version')} is newer than this "
                        f"acoustic-inv reads ({FORMAT_VERSION})")
    return meta


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    out = []
    for name in ("acoustic-inv", "pelagic", "arlpy", "numpy", "scipy", "xarray", "netCDF4"):
        try:
            out.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            out.append((name, "not installed"))
    return tuple(out)


def versions() -> dict[str, str]:
    """Versions of the packages that shape the data (ours, the engines', the numerics')."""
    return dict(_versions())


@functools.lru_cache(maxsize=None)
def engine_version(name: str) -> str:
    """The version string the propagation package reports for an engine ("unavailable" if none)."""
    import propagation

    try:
        return propagation.get_engine(name).version()
    except propagation.PropagationError:
        return "unavailable"


# ---------------------------------------------------------------------------------------------------
# Chunk <-> xarray
# ---------------------------------------------------------------------------------------------------


def _param_coords(scenario: Scenario) -> dict[str, Any]:
    prior = scenario.prior
    return {
        "param": ("param", list(prior.names), {"long_name": "parameter name"}),
        "param_units": ("param", list(prior.units), {"long_name": "parameter units"}),
        "param_long_name": ("param", [p.long_name for p in prior.params], {"long_name": "parameter long name"}),
    }


def _theta_attrs(scenario: Scenario) -> dict[str, str]:
    return {"units": ", ".join(scenario.prior.units),
            "long_name": "parameters (units per param: see param_units)"}


def chunk_to_datasets(result: ChunkResult, scenario: Scenario, seed: int, chunk_index: int,
                      chunk_size: int, feature_names: Sequence[str]) -> tuple[xr.Dataset, xr.Dataset]:
    """Turns a simulated chunk into its root dataset (successes) and its failures dataset."""
    ok = result.ok
    coords = {
        "sample": ("sample", result.indices[ok], {"long_name": "sample index"}),
        "freq": ("freq", np.asarray(scenario.freqs_hz), {"units": "Hz", "long_name": "tone frequency"}),
        "receiver": ("receiver", np.asarray(scenario.array.receiver_depths_m),
                     {"units": "m", "long_name": "receiver depth"}),
        "feature": ("feature", list(feature_names), {"long_name": "feature name"}),
        **_param_coords(scenario),
    }
    pressure_attrs = {"units": "1", "long_name": "noise-free complex pressure, {} part, re a unit source at 1 m"}
    data = {
        "theta": (("sample", "param"), result.theta[ok], _theta_attrs(scenario)),
        "x": (("sample", "feature"), result.x[ok].astype(np.float32),
              {"units": "1", "long_name": f"observation features ({scenario.observation.features})"}),
        "pressure_real": (("sample", "freq", "receiver"), result.pressure[ok].real,
                          {**pressure_attrs, "long_name": pressure_attrs["long_name"].format("real")}),
        "pressure_imag": (("sample", "freq", "receiver"), result.pressure[ok].imag,
                          {**pressure_attrs, "long_name": pressure_attrs["long_name"].format("imaginary")}),
        "snr_db": (("sample",), result.snr_db[ok], {"units": "dB", "long_name": "signal-to-noise ratio"}),
    }
    attrs = {
        "title": f"acoustic-inv simulated dataset, scenario {scenario.name}",
        "scenario": scenario.text,
        "scenario_name": scenario.name,
        "scenario_sha256": scenario.sha256,
        "seed": int(seed),
        "chunk_index": int(chunk_index),
        "chunk_size": int(chunk_size),
        "engine": scenario.engine.name,
        "engine_version": engine_version(scenario.engine.name),
        "engine_options": json.dumps(scenario.engine.options_dict, sort_keys=True),
        "features": scenario.observation.features,
        "reference_receiver": int(scenario.observation.reference_receiver),
        "versions": json.dumps(versions(), sort_keys=True),
        "Conventions": "CF-1.8",
    }
    root = xr.Dataset(data, coords=coords, attrs=attrs)
    bad = ~ok
    failures = xr.Dataset(
        {
            "theta": (("failure", "param"), result.theta[bad], _theta_attrs(scenario)),
            "snr_db": (("failure",), result.snr_db[bad], {"units": "dB", "long_name": "signal-to-noise ratio"}),
            "error": (("failure",), np.array([e for e in result.errors if e], dtype=object),
                      {"long_name": "engine error text"}),
        },
        coords={"failure": ("failure", result.indices[bad], {"long_name": "sample index of the failure"}),
                **_param_coords(scenario)},
        attrs={"long_name": "samples whose engine run failed"})
    return root, failures


def _with_complex_pressure(ds: xr.Dataset) -> xr.Dataset:
    if "pressure_real" not in ds:
        return ds
    pressure = ds["pressure_real"] + 1j * ds["pressure_imag"]
    pressure.attrs = {"units": "1", "long_name": "noise-free complex pressure re a unit source at 1 m"}
    return ds.drop_vars(["pressure_real", "pressure_imag"]).assign(pressure=pressure)


def chunk_files(path: str | os.PathLike[str]) -> list[Path]:
    """The finished chunk files of a dataset, in order."""
    return sorted((Path(path) / CHUNK_DIR).glob("chunk-[0-9][0-9][0-9][0-9][0-9][0-9].nc"))


def iter_chunks(path: str | os.PathLike[str]) -> Iterator[xr.Dataset]:
    """Yields each finished chunk, loaded in memory, in order (complex ``pressure``).

    Raises:
        DataError: when ``path`` is not a dataset.
    """
    read_meta(path)
    for file in chunk_files(path):
        with xr.open_dataset(file, engine=_ENGINE) as ds:
            yield _with_complex_pressure(ds.load())


def open_dataset(path: str | os.PathLike[str], allow_incomplete: bool = False) -> xr.Dataset:
    """Opens a dataset lazily as one :class:`xarray.Dataset` (the chunks concatenated along ``sample``).

    Args:
        path: The dataset directory.
        allow_incomplete: Open a dataset whose generation has not finished (what is there so far).

    Returns:
        Dataset with ``theta(sample, param)``, ``x(sample, feature)``, ``pressure(sample, freq,
        receiver)`` (complex), ``snr_db(sample)``; attrs of the first chunk plus ``n_failed``.

    Raises:
        DataError: when ``path`` is not a dataset, is unfinished (unless allowed) or holds no sample.
    """
    meta = read_meta(path)
    if meta.get("status") != "complete" and not allow_incomplete:
        raise DataError(f"{path}: generation has not finished ({len(chunk_files(path))} of "
                        f"{meta.get('n_chunks')} chunks); run the same simulate command again to resume")
    files = chunk_files(path)
    if not files:
        raise DataError(f"{path}: no finished chunk yet")
    ds = xr.open_mfdataset(
        [str(f) for f in files], engine=_ENGINE, combine="nested", concat_dim="sample",
        data_vars="minimal", coords="minimal", compat="override", join="override",
        combine_attrs="override", parallel=False)
    if ds.sizes.get("sample", 0) == 0:
        raise DataError(f"{path}: every sample failed; see {FAILURES}")
    ds = _with_complex_pressure(ds)
    ds.attrs.pop("chunk_index", None)
    ds.attrs["n_failed"] = int(meta.get("n_failed", 0))
    return ds


def read_failures(path: str | os.PathLike[str]) -> xr.Dataset:
    """All recorded engine failures of a dataset: ``theta(failure, param)``, ``error(failure)``."""
    meta = read_meta(path)
    failures_path = Path(path) / FAILURES
    if meta.get("status") == "complete" and failures_path.is_file():
        with xr.open_dataset(failures_path, engine=_ENGINE) as ds:
            return ds.load()
    parts = []
    for file in chunk_files(path):
        with xr.open_dataset(file, engine=_ENGINE, group="failures") as ds:
            parts.append(ds.load())
    return _concat_failures(parts, meta)


def _concat_failures(parts: list[xr.Dataset], meta: dict[str, Any]) -> xr.Dataset:
    nonempty = [p for p in parts if p.sizes.get("failure", 0)]
    if nonempty:
        return xr.concat(nonempty, dim="failure", data_vars="minimal", coords="minimal",
                         compat="override", join="override")
    names = [p["name"] for p in meta["params"]]
    return xr.Dataset(
        {"theta": (("failure", "param"), np.empty((0, len(names)))),
         "snr_db": (("failure",), np.empty(0), {"units": "dB", "long_name": "signal-to-noise ratio"}),
         "error": (("failure",), np.array([], dtype=object), {"long_name": "engine error text"})},
        coords={"failure": ("failure", np.empty(0, dtype=np.int64)), "param": ("param", names)})


# ---------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------


@dataclass
class GenerationReport:
    """What a :func:`generate` call did.

    Attributes:
        path: Dataset directory.
        n_samples: Samples asked for.
        n_ok: Successful samples in the dataset.
        n_failed: Samples whose engine run failed (recorded in failures.nc).
        chunks_written: Chunks this call wrote.
        chunks_skipped: Chunks already there (resumed).
        samples_computed: Samples this call simulated.
        elapsed_s: Wall time of this call, s.
        engine_seconds: Time spent inside the engine by all workers, s.
    """

    path: Path
    n_samples: int
    n_ok: int
    n_failed: int
    chunks_written: int
    chunks_skipped: int
    samples_computed: int
    elapsed_s: float
    engine_seconds: float

    @property
    def samples_per_second(self) -> float:
        """Throughput of this call, samples/s."""
        return self.samples_computed / self.elapsed_s if self.elapsed_s > 0 else float("nan")


def _new_meta(scenario: Scenario, seed: int, n_samples: int, chunk_size: int, n_features: int,
              feature_names: list[str]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "status": "running",
        "scenario": scenario.name,
        "scenario_sha256": scenario.sha256,
        "scenario_source": scenario.path,
        "seed": int(seed),
        "n_samples": int(n_samples),
        "chunk_size": int(chunk_size),
        "n_chunks": math.ceil(n_samples / chunk_size),
        "environment_reuse": scenario.simulation.environment_reuse,
        "params": scenario.prior.to_records(),
        "n_features": int(n_features),
        "features": scenario.observation.features,
        "reference_receiver": scenario.observation.reference_receiver,
        "freqs_hz": list(scenario.freqs_hz),
        "receiver_depths_m": list(scenario.array.receiver_depths_m),
        "engine": scenario.engine.name,
        "engine_version": engine_version(scenario.engine.name),
        "engine_options": scenario.engine.options_dict,
        "noise": {"model": scenario.noise.model,
                  "snr_db": scenario.noise.snr_db.to_dict() if scenario.noise.snr_db else None},
        "versions": versions(),
        "created": utc_now(),
    }


def _describe_mismatch(path: Path, key: str, old: Any, new: Any) -> str:
    if key in ("scenario", "scenario_sha256"):
        what = (f"scenario {old!r}" if key == "scenario" else
                f"a different text of the scenario (see {path / SCENARIO_COPY})")
        asked = f"scenario {new!r}" if key == "scenario" else "this scenario text"
        return f"{path} holds a dataset made with {what}, not {asked}"
    return f"{path} holds a dataset with {key} = {old!r}, but this run asks for {key} = {new!r}"


def _remove_dataset(path: Path) -> None:
    """Deletes what a dataset directory holds (only our own files)."""
    shutil.rmtree(path / CHUNK_DIR, ignore_errors=True)
    for name in (META, SCENARIO_COPY, FAILURES):
        (path / name).unlink(missing_ok=True)


def _prepare_directory(path: Path, meta: dict[str, Any], scenario_text: str, force: bool) -> dict[str, Any]:
    """Creates, resumes or (with ``force``) replaces the dataset at ``path``; returns its meta."""
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: exists and is not a directory")
    if (path / META).is_file():
        old = read_meta(path)
        if force:
            _remove_dataset(path)
        else:
            for key in _RESUME_KEYS:
                if old.get(key) != meta[key]:
                    raise DataError(_describe_mismatch(path, key, old.get(key), meta[key])
                                    + "; choose another --out, or pass --force to overwrite it")
            if old.get("status") == "complete":
                raise DataError(f"{path} is a finished dataset ({old['n_samples']} samples); pass --force "
                                "to overwrite it")
            meta = {**meta, "created": old.get("created", meta["created"]), "resumed": utc_now()}
    elif path.is_dir() and any(path.iterdir()):
        raise DataError(f"{path}: exists, is not empty and is not an acoustic-inv dataset; "
                        "choose another --out")
    # meta.json first: from then on the directory is recognisably ours, wherever a kill interrupts.
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path / META, meta)
    atomic_write_bytes(path / SCENARIO_COPY, scenario_text.encode("utf-8"))
    (path / CHUNK_DIR).mkdir(exist_ok=True)
    for stale in (path / CHUNK_DIR).glob(".chunk-*.tmp"):
        stale.unlink(missing_ok=True)
    for stale in path.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    return meta


# Worker side: one Simulator per process and scenario, built on first use; a queue for progress.
_SIMULATORS: dict[tuple[str, Any], Simulator] = {}
_PROGRESS: Any = None


def _simulate_chunk(scenario: Scenario, seed: int, start: int, stop: int,
                    runner: Runner | None) -> ChunkResult:
    key = (scenario.sha256, runner)
    simulator = _SIMULATORS.get(key)
    if simulator is None:
        simulator = _SIMULATORS[key] = Simulator(scenario, runner)
    progress = _PROGRESS
    on_sample = (lambda: progress.put(1)) if progress is not None else None
    return simulator.simulate(seed, range(start, stop), on_sample=on_sample)


def worker_init(progress: Any = None) -> None:
    """Initializer of the simulation worker processes (progress counter, die with the parent)."""
    global _PROGRESS
    _PROGRESS = progress
    # Die with the parent: a killed `simulate` must not leave workers computing orphaned chunks.
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    # Ctrl-C goes to the whole process group; the parent handles it and stops the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def pool_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context of the simulation worker pools (``spawn``; see the comment)."""
    # spawn: each worker is a fresh interpreter and a direct child of this process. Not fork: forking
    # after the engine's threads have run can deadlock. Not forkserver: its workers are children of
    # the server, which outlives a killed parent, so they would go on computing orphaned chunks.
    return multiprocessing.get_context("spawn")


Task = tuple[int, int, int]  # chunk index, first sample, stop


def _run_inprocess(scenario: Scenario, seed: int, tasks: list[Task], runner: Runner | None,
                   on_sample: Callable[[int], None]) -> Iterator[tuple[int, ChunkResult]]:
    simulator = Simulator(scenario, runner)
    for chunk, start, stop in tasks:
        yield chunk, simulator.simulate(seed, range(start, stop), on_sample=lambda: on_sample(1))


def _drain(progress: Any, on_sample: Callable[[int], None]) -> None:
    count = 0
    while True:
        try:
            count += progress.get_nowait()
        except (queue.Empty, OSError, ValueError):  # empty, or torn down with its pool
            break
    if count:
        on_sample(count)


def _run_pool(scenario: Scenario, seed: int, tasks: list[Task], runner: Runner | None, workers: int,
              on_sample: Callable[[int], None]) -> Iterator[tuple[int, ChunkResult]]:
    context = pool_context()
    progress = context.Queue()
    executor = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=worker_init, initargs=(progress,))
    try:
        futures = {executor.submit(_simulate_chunk, scenario, seed, start, stop, runner): chunk
                   for chunk, start, stop in tasks}
        pending = set(futures)
        while pending:
            done, pending = concurrent.futures.wait(pending, timeout=0.5,
                                                    return_when=concurrent.futures.FIRST_COMPLETED)
            _drain(progress, on_sample)
            for future in done:
                yield futures[future], future.result()
    except BaseException:
        # Interrupted or failed: stop the workers now rather than wait for their chunks (minutes for
        # an expensive scenario); what they computed is lost, the finished chunks are on disk.
        for process in list(getattr(executor, "_processes", {}).values()):
            process.terminate()
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    _drain(progress, on_sample)
    progress.close()


def _run_dask(scenario: Scenario, seed: int, tasks: list[Task], runner: Runner | None,
              scheduler: str) -> Iterator[tuple[int, ChunkResult]]:
    try:
        from distributed import Client, as_completed
    except ImportError:  # pragma: no cover - distributed is a dependency
        raise UserError("--scheduler needs the 'distributed' package") from None
    try:
        client = Client(scheduler, timeout="20s", set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise UserError(f"--scheduler {scheduler}: cannot connect: {error}") from None
    try:
        futures = {}
        for chunk, start, stop in tasks:
            key = f"acoustic-inv-{scenario.sha256[:12]}-{seed}-chunk-{chunk:06d}"
            future = client.submit(_simulate_chunk, scenario, seed, start, stop, runner, key=key,
                                   pure=False, retries=1)
            futures[future] = chunk
        for future in as_completed(list(futures), loop=client.loop):
            yield futures[future], future.result()
            future.release()
    finally:
        client.close()


def generate(scenario: Scenario | str | os.PathLike[str], out: str | os.PathLike[str], n_samples: int, *,
             seed: int = 0, workers: int = 1, chunk_size: int | None = None, scheduler: str | None = None,
             force: bool = False, progress: bool = True, runner: Runner | None = None) -> GenerationReport:
    """Simulates ``n_samples`` samples of a scenario into the dataset directory ``out``.

    Args:
        scenario: A scenario, a scenario name (``swellex96``) or a path to a scenario file.
        out: Dataset directory (created; resumed when it holds an unfinished run of the same
            scenario, seed, size and chunk size).
        n_samples: Number of samples (sample indices ``0 .. n_samples-1``).
        seed: Dataset seed; with the sample index it fixes every random number of a sample.
        workers: Worker processes of the local pool (1: simulate in this process).
        chunk_size: Samples per chunk file (default: the scenario's ``[simulation] chunk_size``).
        scheduler: Address of a Dask distributed scheduler (``tcp://host:port``); when given, the
            chunks run on that cluster instead of the local pool.
        force: Overwrite an existing dataset at ``out``.
        progress: Show a tqdm progress bar on stderr.
        runner: Forward model replacing :func:`propagation.pressure` (tests only); must be a
            module-level function to reach worker processes.

    Returns:
        A :class:`GenerationReport`.

    Raises:
        ConfigError: bad arguments or scenario. DataError: ``out`` holds something else, a finished
        dataset (without ``force``) or a run with other settings.
    """
    started = time.perf_counter()
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ConfigError(f"n_samples = {n_samples!r}: expected a positive integer")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ConfigError(f"workers = {workers!r}: expected a positive integer")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed = {seed!r}: expected a non-negative integer")
    chunk_size = scenario.simulation.chunk_size if chunk_size is None else chunk_size
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ConfigError(f"chunk_size = {chunk_size!r}: expected a positive integer")
    reuse = scenario.simulation.environment_reuse
    if reuse > 1 and chunk_size % reuse:
        raise ConfigError(f"chunk_size = {chunk_size} is not a multiple of [simulation] environment_reuse "
                          f"= {reuse} (environment groups must not straddle chunks)")
    n_samples, seed, chunk_size, workers = int(n_samples), int(seed), int(chunk_size), int(workers)

    observation = ObservationModel.from_scenario(scenario)
    feature_names = observation.feature_names()
    path = Path(out)
    meta = _new_meta(scenario, seed, n_samples, chunk_size, observation.n_features, feature_names)
    meta = _prepare_directory(path, meta, scenario.text, force)

    n_chunks = meta["n_chunks"]
    tasks: list[Task] = []
    done_samples = 0
    for chunk in range(n_chunks):
        start, stop = chunk * chunk_size, min((chunk + 1) * chunk_size, n_samples)
        if chunk_path(path, chunk).is_file():
            done_samples += stop - start
        else:
            tasks.append((chunk, start, stop))
    skipped = n_chunks - len(tasks)

    from tqdm import tqdm

    bar = tqdm(total=n_samples, initial=done_samples, unit="sample", disable=not progress,
               desc=f"simulate {scenario.name}", dynamic_ncols=True, smoothing=0.05, file=sys.stderr)
    engine_seconds = 0.0
    computed = 0
    written = 0
    failed_so_far = _count_failures_so_far(path) if skipped else 0
    try:
        if scheduler:
            results = _run_dask(scenario, seed, tasks, runner, scheduler)
        elif workers == 1:
            results = _run_inprocess(scenario, seed, tasks, runner, bar.update)
        else:
            results = _run_pool(scenario, seed, tasks, runner, workers, bar.update)
        for chunk, result in results:
            root, failures = chunk_to_datasets(result, scenario, seed, chunk, chunk_size, feature_names)
            target = chunk_path(path, chunk)
            if not target.exists():  # finished chunks are never rewritten
                atomic_write_netcdf(target, root, {"failures": failures})
            written += 1
            computed += len(result.indices)
            engine_seconds += result.engine_seconds
            if scheduler:
                bar.update(len(result.indices))
            if result.n_failed:
                failed_so_far += result.n_failed
                bar.set_postfix(failed=failed_so_far, refresh=False)
    finally:
        bar.close()

    failures = read_failures(path)
    atomic_write_netcdf(path / FAILURES, failures)
    n_failed = int(failures.sizes.get("failure", 0))
    meta.update(status="complete", finished=utc_now(), n_failed=n_failed, n_ok=n_samples - n_failed)
    atomic_write_json(path / META, meta)
    return GenerationReport(path=path, n_samples=n_samples, n_ok=n_samples - n_failed, n_failed=n_failed,
                            chunks_written=written, chunks_skipped=skipped, samples_computed=computed,
                            elapsed_s=time.perf_counter() - started, engine_seconds=engine_seconds)


def _count_failures_so_far(path: Path) -> int:
    total = 0
    for file in chunk_files(path):
        with xr.open_dataset(file, engine=_ENGINE, group="failures") as ds:
            total += ds.sizes.get("failure", 0)
    return total


# ---------------------------------------------------------------------------------------------------
# Info and splits
# ---------------------------------------------------------------------------------------------------


@dataclass
class DatasetInfo:
    """A summary of a dataset directory.

    Attributes:
        path: The directory.
        meta: Its meta.json.
        n_ok: Successful samples in finished chunks.
        n_failed: Failed samples in finished chunks.
        chunks_done: Finished chunks.
        size_bytes: Bytes on disk.
        observed_low: Smallest value of each parameter in the data, shape (d,).
        observed_high: Largest value of each parameter in the data, shape (d,).
        failure_counts: Failures by error type.
        failure_examples: A few (sample index, error) pairs.
    """

    path: Path
    meta: dict[str, Any]
    n_ok: int
    n_failed: int
    chunks_done: int
    size_bytes: int
    observed_low: np.ndarray
    observed_high: np.ndarray
    failure_counts: dict[str, int] = field(default_factory=dict)
    failure_examples: list[tuple[int, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when generation has finished."""
        return self.meta.get("status") == "complete"

    def format(self) -> str:
        """A human-readable multi-line summary."""
        m = self.meta
        lines = [
            f"dataset    {self.path}",
            f"scenario   {m['scenario']} (engine {m['engine']}, seed {m['seed']})",
            f"status     {m.get('status')}" + ("" if self.complete else
                                              f" ({self.chunks_done} of {m['n_chunks']} chunks)"),
            f"samples    {self.n_ok} ok, {self.n_failed} failed, {m['n_samples']} asked for "
            f"({m['chunk_size']} per chunk)",
            f"features   {m['n_features']} ({m['features']}), {len(m['freqs_hz'])} tones "
            f"{', '.join(f'{f:g}' for f in m['freqs_hz'])} Hz, {len(m['receiver_depths_m'])} receivers",
            f"size       {self.size_bytes / 1e6:.1f} MB",
        ]
        if "split" in m:
            lines.append(f"split      {m['split']['name']} of {m['split']['of']}")
        lines.append("parameters (prior bounds; range seen in the data):")
        width = max(len(p["name"]) for p in m["params"])
        for i, p in enumerate(m["params"]):
            seen = (f"{self.observed_low[i]:.6g} .. {self.observed_high[i]:.6g}"
                    if self.n_ok else "-")
            lines.append(f"  {p['name']:<{width}}  {p['distribution']:<16} [{p['low']:g}, {p['high']:g}] "
                         f"{p['units']};  seen {seen}")
        if self.n_failed:
            lines.append("failures:")
            for kind, count in sorted(self.failure_counts.items(), key=lambda kv: -kv[1]):
                lines.append(f"  {count:6d}  {kind}")
            for index, error in self.failure_examples:
                lines.append(f"  e.g. sample {index}: {error.splitlines()[0][:160]}")
        return "\n".join(lines)


def dataset_info(path: str | os.PathLike[str]) -> DatasetInfo:
    """Summarises a dataset directory (finished or not).

    Raises:
        DataError: when ``path`` is not a dataset.
    """
    path = Path(path)
    meta = read_meta(path)
    d = len(meta["params"])
    low = np.full(d, np.inf)
    high = np.full(d, -np.inf)
    n_ok = 0
    files = chunk_files(path)
    for file in files:
        with xr.open_dataset(file, engine=_ENGINE) as ds:
            if ds.sizes.get("sample", 0):
                theta = ds["theta"].values
                low = np.minimum(low, theta.min(axis=0))
                high = np.maximum(high, theta.max(axis=0))
                n_ok += ds.sizes["sample"]
    failures = read_failures(path) if files or (path / FAILURES).is_file() else None
    counts: dict[str, int] = {}
    examples: list[tuple[int, str]] = []
    n_failed = 0
    if failures is not None and failures.sizes.get("failure", 0):
        n_failed = failures.sizes["failure"]
        for index, error in zip(failures["failure"].values, failures["error"].values):
            kind = str(error).split(":", 1)[0]
            counts[kind] = counts.get(kind, 0) + 1
            if len(examples) < 3:
                examples.append((int(index), str(error)))
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return DatasetInfo(path=path, meta=meta, n_ok=n_ok, n_failed=n_failed, chunks_done=len(files),
                       size_bytes=size, observed_low=low, observed_high=high, failure_counts=counts,
                       failure_examples=examples)


def _split_names(n: int) -> list[str]:
    return {2: ["train", "test"], 3: ["train", "val", "test"]}.get(n, [f"part{i}" for i in range(n)])


def split_dataset(path: str | os.PathLike[str], fractions: Sequence[float], *,
                  names: Sequence[str] | None = None, seed: int = 0,
                  out_dir: str | os.PathLike[str] | None = None, force: bool = False) -> list[Path]:
    """Splits a finished dataset at random into new dataset directories (e.g. train/val/test).

    Samples that share an environment draw (``environment_reuse`` > 1) stay in the same part.

    Args:
        path: Source dataset.
        fractions: Fraction of the samples in each part, each in (0, 1), summing to 1.
        names: Part names (default train/test or train/val/test).
        seed: Seed of the random assignment.
        out_dir: Where the parts go (default: beside ``path``); part ``name`` is ``<path name>-<name>``.
        force: Overwrite existing part directories.

    Returns:
        The part directories, in the order of ``fractions``.

    Raises:
        ConfigError: bad fractions or names. DataError: unfinished source or existing outputs.
    """
    path = Path(path)
    meta = read_meta(path)
    fractions = [float(f) for f in fractions]
    if len(fractions) < 2:
        raise ConfigError(f"--fractions {fractions}: expected at least two fractions")
    if any(not 0.0 < f < 1.0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"--fractions {fractions}: expected fractions in (0, 1) summing to 1 "
                          f"(sum is {sum(fractions):g})")
    names = list(names) if names else _split_names(len(fractions))
    if len(names) != len(fractions):
        raise ConfigError(f"--names {names}: expected one name per fraction ({len(fractions)})")
    if len(set(names)) != len(names) or any(not n or "/" in n for n in names):
        raise ConfigError(f"--names {names}: expected distinct names without slashes")
    out_dir = Path(out_dir) if out_dir is not None else path.parent
    targets = [out_dir / f"{path.name}-{name}" for name in names]
    for target in targets:
        if target.exists() and any(target.iterdir()):
            if not (force and (target / META).is_file()):
                raise DataError(f"{target}: already exists; pass --force to overwrite it"
                                if (target / META).is_file() else
                                f"{target}: exists and is not an acoustic-inv dataset")

    ds = open_dataset(path).load()
    samples = ds["sample"].values
    reuse = int(meta.get("environment_reuse", 1))
    groups = samples // reuse
    unique_groups = np.unique(groups)
    order = np.random.default_rng(np.random.SeedSequence([int(seed), 2])).permutation(len(unique_groups))
    edges = np.round(np.cumsum([0.0] + fractions) * len(unique_groups)).astype(int)
    scenario_text = (path / SCENARIO_COPY).read_text(encoding="utf-8")
    chunk_size = int(meta["chunk_size"])
    for k, (name, target) in enumerate(zip(names, targets)):
        chosen = np.sort(unique_groups[order[edges[k]:edges[k + 1]]])
        keep = np.isin(groups, chosen)
        part = ds.isel(sample=np.flatnonzero(keep))
        if target.exists():
            _remove_dataset(target)
        (target / CHUNK_DIR).mkdir(parents=True, exist_ok=True)
        for c in range(math.ceil(part.sizes["sample"] / chunk_size)):
            piece = part.isel(sample=slice(c * chunk_size, (c + 1) * chunk_size))
            pressure = piece["pressure"]
            piece = piece.drop_vars("pressure").assign(
                pressure_real=pressure.real.assign_attrs(units="1", long_name="noise-free complex pressure, real part"),
                pressure_imag=pressure.imag.assign_attrs(units="1", long_name="noise-free complex pressure, imaginary part"))
            piece.attrs = {k2: v for k2, v in piece.attrs.items() if k2 != "n_failed"}
            piece.attrs.update(chunk_index=c, split=name)
            atomic_write_netcdf(chunk_path(target, c), piece)
        part_meta = {**meta, "n_samples": int(part.sizes["sample"]), "n_ok": int(part.sizes["sample"]),
                     "n_failed": 0, "n_chunks": math.ceil(part.sizes["sample"] / chunk_size),
                     "status": "complete", "created": utc_now(),
                     "split": {"of": str(path), "name": name, "fractions": fractions, "names": names,
                               "seed": int(seed)}}
        atomic_write_bytes(target / SCENARIO_COPY, scenario_text.encode("utf-8"))
        atomic_write_netcdf(target / FAILURES, _concat_failures([], meta))
        atomic_write_json(target / META, part_meta)
    return targets


def dataset_scenario(path: str | os.PathLike[str]) -> Scenario:
    """The scenario a dataset was made with (from its copy of the scenario text)."""
    path = Path(path)
    meta = read_meta(path)
    text = (path / SCENARIO_COPY).read_text(encoding="utf-8")
    return scenario_from_text(text, source=str(path / SCENARIO_COPY), default_name=meta["scenario"])

"""Where training pairs ``(theta, x)`` come from: in memory, or streamed from a chunked directory.

A :class:`DataSource` describes its parameters (names, units, bounds) and feature count, and yields
*blocks* of rows for a split (``"train"`` or ``"val"``). The trainer re-cuts blocks into batches, so
a source never has to hold more than one block. A source may also hold, per row, the realization of
the simulator's own random variables that produced ``x`` (``noise_dim > 0``; see
:meth:`DataSource.blocks_with_noise`; only :class:`InMemorySource` does so far): the padded INN
carries it on its parameter side, so that ``(theta, noise) -> x`` is a deterministic map
(``noise_mode = "theta_pad"``). The split is a deterministic function of
``(seed, val_fraction)``; the shuffle of the training split is a function of ``(seed, epoch)``, so a
resumed run sees exactly the batches an uninterrupted one would.

The chunked layout (written by :mod:`acoustic_inv.datasets`)::

    DIR/meta.json                  {"params": [{"name", "units", "low", "high"}, ...], "n_features": m, ...}
    DIR/chunks/chunk-000000.nc     theta(sample, param) float64, x(sample, feature) float32
    DIR/chunks/chunk-000001.nc     ...
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acoustic_inv.errors import DataError

__all__ = ["ChunkedSource", "DataSource", "InMemorySource", "ParamInfo", "SPLITS"]

SPLITS = ("train", "val")
Block = tuple[np.ndarray, np.ndarray]
NoisyBlock = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class ParamInfo:
    """One parameter: name, units and prior bounds (``-inf``/``+inf`` for none)."""

    name: str
    units: str
    low: float = -math.inf
    high: float = math.inf


class DataSource(ABC):
    """Training pairs for :func:`acoustic_inv.training.fit`.

    Attributes:
        params: the d parameters, in column order of ``theta``.
        n_features: number of features m (columns of ``x``).
        description: a short name for messages (a path, or "in-memory arrays").
    """

    params: tuple[ParamInfo, ...]
    n_features: int
    description: str

    @property
    def n_params(self) -> int:
        """Number of parameters d."""
        return len(self.params)

    @property
    def noise_dim(self) -> int:
        """Number k of simulator noise variables held per row (0: the source holds none)."""
        return 0

    def blocks_with_noise(
        self, split: str, *, val_fraction: float, seed: int, epoch: int | None = None
    ) -> Iterator[NoisyBlock]:
        """As :meth:`blocks`, with each row's simulator noise realization as a third array.

        Sources without one (``noise_dim == 0``) give an empty (k, 0) array.

        Yields:
            ``(theta, x, noise)``: float64 (k, d), float32 (k, m) and float64 (k, noise_dim).
        """
        for theta, x in self.blocks(split, val_fraction=val_fraction, seed=seed, epoch=epoch):
            yield theta, x, np.zeros((len(theta), 0))

    @abstractmethod
    def blocks(self, split: str, *, val_fraction: float, seed: int, epoch: int | None = None) -> Iterator[Block]:
        """Yields blocks of one split.

        Args:
            split: ``"train"`` or ``"val"``.
            val_fraction: fraction of the rows held out for validation, in [0, 1).
            seed: seed of the split and of the shuffles.
            epoch: shuffle the rows for this epoch; ``None`` keeps the stored order.

        Yields:
            ``(theta, x)``: float64 array (k, d) in the parameters' units and float32 array (k, m).
        """


def _check_split(split: str, val_fraction: float) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")


def _val_mask(n: int, val_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask (n,) with ``round(n * val_fraction)`` rows set, at random places."""
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: int(round(n * val_fraction))]] = True
    return mask


class InMemorySource(DataSource):
    """Pairs held as arrays, optionally with the simulator noise that made each ``x``.

    Args:
        theta: shape (n, d), parameters in their units.
        x: shape (n, m), observation features.
        params: parameter descriptions (default: ``theta_0``... unbounded, units ``"1"``).
        noise: shape (n, k), optional: the realization of the simulator's random variables behind
            each row, such that ``x[i]`` is a deterministic function of ``theta[i]`` and
            ``noise[i]`` (for ``x = theta + 0.3 eps``, ``eps``; for a random angle and radius, those
            two, or better their normal scores, since a flow maps unbounded values more easily).
            Any units: the trainer standardizes each column. Used by the INN's ``"theta_pad"``
            noise mode; the cINN ignores it.

    Raises:
        DataError: for arrays of the wrong shape or (for ``noise``) non-finite values.
    """

    def __init__(
        self,
        theta: np.ndarray,
        x: np.ndarray,
        params: Sequence[ParamInfo] | None = None,
        noise: np.ndarray | None = None,
    ) -> None:
        theta = np.asarray(theta, dtype=np.float64)
        x = np.asarray(x, dtype=np.float32)
        if theta.ndim != 2 or x.ndim != 2 or theta.shape[0] != x.shape[0]:
            raise DataError(f"theta and x must be (n, d) and (n, m) with the same n, got {theta.shape} and {x.shape}")
        if theta.shape[0] < 2 or theta.shape[1] < 1 or x.shape[1] < 1:
            raise DataError(f"need at least 2 rows, 1 parameter and 1 feature, got theta {theta.shape}, x {x.shape}")
        if params is None:
            params = [ParamInfo(f"theta_{i}", "1") for i in range(theta.shape[1])]
        if len(params) != theta.shape[1]:
            raise DataError(f"{len(params)} parameter descriptions for {theta.shape[1]} columns of theta")
        if noise is not None:
            noise = np.asarray(noise, dtype=np.float64)
            if noise.ndim != 2 or noise.shape[0] != theta.shape[0] or noise.shape[1] < 1:
                raise DataError(
                    f"noise must be (n, k) with k >= 1 and the n = {theta.shape[0]} rows of theta, "
                    f"got shape {noise.shape}"
                )
            if not np.isfinite(noise).all():
                raise DataError("noise contains a NaN or infinite value")
        self.theta = theta
        self.x = x
        self.noise = noise
        self.params = tuple(params)
        self.n_features = x.shape[1]
        self.description = "in-memory arrays"

    @property
    def noise_dim(self) -> int:
        """Number k of simulator noise variables per row (0 when none were given)."""
        return 0 if self.noise is None else self.noise.shape[1]

    def _rows(self, split: str, val_fraction: float, seed: int, epoch: int | None) -> np.ndarray:
        _check_split(split, val_fraction)
        mask = _val_mask(len(self.theta), val_fraction, np.random.default_rng([seed, 0]))
        rows = np.flatnonzero(mask if split == "val" else ~mask)
        if epoch is not None:
            rows = np.random.default_rng([seed, 1, epoch]).permutation(rows)
        return rows

    def blocks(self, split: str, *, val_fraction: float, seed: int, epoch: int | None = None) -> Iterator[Block]:
        rows = self._rows(split, val_fraction, seed, epoch)
        if rows.size:
            yield self.theta[rows], self.x[rows]

    def blocks_with_noise(
        self, split: str, *, val_fraction: float, seed: int, epoch: int | None = None
    ) -> Iterator[NoisyBlock]:
        rows = self._rows(split, val_fraction, seed, epoch)
        if rows.size:
            noise = self.noise[rows] if self.noise is not None else np.zeros((rows.size, 0))
            yield self.theta[rows], self.x[rows], noise


class ChunkedSource(DataSource):
    """Pairs streamed from a chunked dataset directory, a few chunks in memory at a time.

    The validation rows are drawn within each chunk, so the split is stable whatever the chunk
    order. For an epoch, the chunk order is shuffled, then rows are shuffled within each group of
    ``buffer_chunks`` consecutive chunks.

    Args:
        path: the dataset directory.
        buffer_chunks: chunks loaded (and shuffled together) at a time (>= 1).
        allow_incomplete: train on the chunks finished so far of a dataset still being generated
            (the chunk list is fixed when the source is made).
        renoise: noise augmentation: each training epoch, draw a fresh SNR from the scenario's noise
            model and a fresh noise realization for every sample, and recompute its features from the
            stored noise-free pressure (the validation rows keep their stored features). A network
            then never sees the same noisy observation twice, which curbs overfitting a modest dataset.
        with_noise: also give each row's simulator noise (:meth:`blocks_with_noise`, ``noise_dim``
            variables: the SNR as a normal score and the noise normals, see
            :func:`acoustic_inv.simulation.simulator_noise`), regenerated from the dataset seed and
            sample index, or the fresh draws of ``renoise``; for the INN's ``theta_pad`` mode.

    Raises:
        DataError: when ``meta.json`` or the chunks are missing or do not match.
    """

    def __init__(self, path: str | Path, buffer_chunks: int = 4, allow_incomplete: bool = False,
                 renoise: bool = False, with_noise: bool = False) -> None:
        if buffer_chunks < 1:
            raise ValueError(f"buffer_chunks must be >= 1, got {buffer_chunks}")
        self.path = Path(path)
        self.buffer_chunks = buffer_chunks
        self.description = str(self.path)
        meta_path = self.path / "meta.json"
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            raise DataError(f"{meta_path}: not found; is {self.path} a chunked dataset directory?") from None
        except (OSError, json.JSONDecodeError) as error:
            raise DataError(f"{meta_path}: cannot read: {error}") from None
        try:
            self.params = tuple(
                ParamInfo(str(p["name"]), str(p["units"]), float(p["low"]), float(p["high"])) for p in meta["params"]
            )
            self.n_features = int(meta["n_features"])
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(
                f"{meta_path}: expected 'params' (a list of {{name, units, low, high}}) and 'n_features', "
                f"got a problem with {error}"
            ) from None
        if not self.params or self.n_features < 1:
            raise DataError(f"{meta_path}: needs at least one parameter and n_features >= 1")
        if meta.get("status", "complete") != "complete" and not allow_incomplete:
            raise DataError(
                f"{meta_path}: status is {meta['status']!r}: the dataset is still being generated; "
                "finish it (run the same simulate command again) before training, or train on the chunks "
                "finished so far with --allow-incomplete"
            )
        self.chunk_paths = sorted((self.path / "chunks").glob("chunk-" + "[0-9]" * 6 + ".nc"))
        if not self.chunk_paths:
            raise DataError(f"{self.path / 'chunks'}: no chunk-NNNNNN.nc files")
        # Samples that share an environment draw stay on one side of the validation split.
        self.group_size = max(1, int(meta.get("environment_reuse", 1)))
        self._noise = None
        self._noise_layout: tuple[int, int, int, int] | None = None  # seed, n_params, n_freq, n_receiver
        if renoise or with_noise:
            from acoustic_inv.datasets import dataset_scenario
            from acoustic_inv.observation import ObservationModel

            scenario = dataset_scenario(self.path)
            what = "renoise" if renoise else "with_noise (an INN in theta_pad mode)"
            if scenario.noise.snr_db is None:
                raise DataError(f"{self.path}: {what} needs a scenario with a noise model; it has none")
            observation = ObservationModel.from_scenario(scenario)
            if renoise:
                self._noise = (observation, scenario.noise.snr_db)
            if with_noise:
                try:
                    seed = int(meta["seed"])
                except (KeyError, TypeError, ValueError):
                    raise DataError(f"{meta_path}: with_noise needs the dataset's 'seed'") from None
                self._noise_layout = (seed, len(self.params), observation.n_freq, observation.n_receiver)

    @property
    def noise_dim(self) -> int:
        """Simulator noise variables per row: ``1 + 2 * n_freq * n_receiver`` with ``with_noise``, else 0."""
        if self._noise_layout is None:
            return 0
        _, _, n_freq, n_receiver = self._noise_layout
        return 1 + 2 * n_freq * n_receiver

    def read_chunk(self, index: int, noise_rng: np.random.Generator | None = None) -> Block:
        """Loads chunk ``index``: ``(theta (k, d) float64, x (k, m) float32)``.

        With ``noise_rng`` (noise augmentation), the features are recomputed from the stored
        noise-free pressure with a fresh SNR and noise drawn from it.

        Raises:
            DataError: naming the file when it cannot be read or does not match ``meta.json``.
        """
        theta, x, _, _ = self._read_chunk(index, noise_rng)
        return theta, x

    def _read_chunk(self, index: int, noise_rng: np.random.Generator | None, want_noise: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Chunk ``index`` as (theta, x, sample indices or None, simulator noise or None).

        The noise (with ``want_noise`` on a source made ``with_noise``) is that of the features
        returned: the fresh draws when ``noise_rng`` renoises them, else the stored features' own.

        Raises:
            DataError: naming the file when it cannot be read or does not match ``meta.json``.
        """
        import xarray as xr

        path = self.chunk_paths[index]
        try:
            with xr.open_dataset(path) as ds:
                theta_da, x_da = ds["theta"], ds["x"]
                if theta_da.dims != ("sample", "param") or x_da.dims != ("sample", "feature"):
                    raise DataError(
                        f"{path}: expected theta(sample, param) and x(sample, feature), got "
                        f"theta{theta_da.dims} and x{x_da.dims}"
                    )
                names = [str(n) for n in theta_da["param"].values] if "param" in theta_da.coords else None
                theta = np.asarray(theta_da.values, dtype=np.float64)
                x = np.asarray(x_da.values, dtype=np.float32)
                samples = np.asarray(ds["sample"].values, dtype=np.int64) if "sample" in ds.coords else None
                noise = None
                if noise_rng is not None and self._noise is not None:
                    pressure = np.asarray(ds["pressure_real"].values) + 1j * np.asarray(ds["pressure_imag"].values)
                    x, noise = self._renoised(pressure, noise_rng)
        except DataError:
            raise
        except KeyError as error:
            raise DataError(f"{path}: missing variable {error}") from None
        except (OSError, ValueError) as error:
            raise DataError(f"{path}: cannot read as netCDF: {error}") from None
        expected = [p.name for p in self.params]
        if names is not None and names != expected:
            raise DataError(f"{path}: param coordinate {names} does not match meta.json {expected}")
        if theta.shape[1] != len(expected) or x.shape[1] != self.n_features:
            raise DataError(
                f"{path}: theta has {theta.shape[1]} params and x {x.shape[1]} features; meta.json says "
                f"{len(expected)} and {self.n_features}"
            )
        if not want_noise or self._noise_layout is None:
            return theta, x, samples, None
        if noise is None:
            if samples is None:
                raise DataError(f"{path}: no 'sample' coordinate, so the simulator noise cannot be regenerated")
            from acoustic_inv.simulation import simulator_noise

            noise = simulator_noise(*self._noise_layout[:1], samples, *self._noise_layout[1:])
        return theta, x, samples, noise

    def _renoised(self, pressure: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Fresh noisy features of a chunk's noise-free pressure (k, n_freq, n_receiver), and the
        noise variables drawn for them, laid out as :func:`acoustic_inv.simulation.simulator_noise`."""
        from scipy import special

        from acoustic_inv.observation import add_noise

        observation, snr = self._noise
        u_snr = rng.random(len(pressure))
        snr_db = np.asarray(snr.ppf(u_snr), dtype=float)
        # add_noise draws the real parts, then the imaginary parts, of the whole chunk; a copy of the
        # stream replays them.
        replay = np.random.Generator(type(rng.bit_generator)())
        replay.bit_generator.state = rng.bit_generator.state
        x = observation.features_from_pressure(add_noise(pressure, snr_db, rng)).astype(np.float32)
        real = replay.standard_normal(pressure.shape).reshape(len(pressure), -1)
        imag = replay.standard_normal(pressure.shape).reshape(len(pressure), -1)
        return x, np.column_stack([special.ndtri(u_snr), real, imag])

    def _val_rows(self, index: int, samples: np.ndarray | None, n: int, val_fraction: float,
                  seed: int) -> np.ndarray:
        rng = np.random.default_rng([seed, 0, int(index)])
        if self.group_size == 1 or samples is None or len(samples) != n:
            return _val_mask(n, val_fraction, rng)
        groups = samples // self.group_size
        unique = np.unique(groups)
        chosen = unique[rng.random(len(unique)) < val_fraction]
        return np.isin(groups, chosen)

    def blocks(self, split: str, *, val_fraction: float, seed: int, epoch: int | None = None) -> Iterator[Block]:
        for theta, x, _ in self._blocks(split, val_fraction, seed, epoch, want_noise=False):
            yield theta, x

    def blocks_with_noise(
        self, split: str, *, val_fraction: float, seed: int, epoch: int | None = None
    ) -> Iterator[NoisyBlock]:
        if self._noise_layout is None:
            yield from super().blocks_with_noise(split, val_fraction=val_fraction, seed=seed, epoch=epoch)
            return
        yield from self._blocks(split, val_fraction, seed, epoch, want_noise=True)

    def _blocks(self, split: str, val_fraction: float, seed: int, epoch: int | None,
                want_noise: bool) -> Iterator[NoisyBlock]:
        _check_split(split, val_fraction)
        order = np.arange(len(self.chunk_paths))
        if epoch is not None:
            order = np.random.default_rng([seed, 1, epoch]).permutation(order)
        for start in range(0, len(order), self.buffer_chunks):
            thetas, xs, noises = [], [], []
            for index in order[start : start + self.buffer_chunks]:
                noise_rng = None
                if self._noise is not None and split == "train" and epoch is not None:
                    noise_rng = np.random.default_rng([seed, 3, epoch, int(index)])
                theta, x, samples, noise = self._read_chunk(int(index), noise_rng, want_noise)
                mask = self._val_rows(int(index), samples, len(theta), val_fraction, seed)
                keep = mask if split == "val" else ~mask
                thetas.append(theta[keep])
                xs.append(x[keep])
                noises.append(noise[keep] if noise is not None else np.zeros((int(keep.sum()), 0)))
            theta, x, noise = np.concatenate(thetas), np.concatenate(xs), np.concatenate(noises)
            if epoch is not None:
                perm = np.random.default_rng([seed, 2, epoch, start]).permutation(len(theta))
                theta, x, noise = theta[perm], x[perm], noise[perm]
            if len(theta):
                yield theta, x, noise


def rebatch(
    blocks: Iterator[tuple[np.ndarray, ...]], batch_size: int, *, drop_last: bool
) -> Iterator[tuple[np.ndarray, ...]]:
    """Cuts a stream of blocks into batches of ``batch_size`` rows, carrying remainders over.

    Args:
        blocks: the stream; each block a tuple of arrays with the same number of rows (``(theta,
            x)`` or ``(theta, x, noise)``).
        batch_size: rows per batch (>= 1).
        drop_last: drop a final short batch, unless it would be the only batch.

    Yields:
        Batches, tuples of as many arrays as the blocks.
    """
    pending_parts: list[list[np.ndarray]] = []
    pending = 0
    emitted = False
    for block in blocks:
        if not pending_parts:
            pending_parts = [[] for _ in block]
        for parts, array in zip(pending_parts, block):
            parts.append(array)
        pending += len(block[0])
        if pending < batch_size:
            continue
        joined = [np.concatenate(parts) for parts in pending_parts]
        n_full = (pending // batch_size) * batch_size
        for start in range(0, n_full, batch_size):
            yield tuple(array[start : start + batch_size] for array in joined)
            emitted = True
        pending_parts = [[array[n_full:]] for array in joined]
        pending = pending - n_full
    if pending and (not drop_last or not emitted):
        yield tuple(np.concatenate(parts) for parts in pending_parts)

"""Posteriors for observations: tones of a recording, complex pressure or features in; draws,
credible intervals and warnings out.

>>> from acoustic_inv.posterior import Posterior
>>> posterior = Posterior.load("model.pt")                    # None: the shipped SWellEx-96 model
>>> result = posterior.invert(tonal_estimate, n=10_000, seed=0)
>>> print(result.table()); result.to_netcdf("post.nc"); result.to_json("post.json")

An observation is one of

- a :class:`~acoustic_inv.tonals.TonalEstimate` (from :func:`~acoustic_inv.tonals.extract_tonals`):
  its tones, receiver count and depths must be the model's; the features come from its principal
  vectors (``unit_pressure``) or its cross-spectral density matrices (``csdm``);
- complex pressure, shape (n_freq, n_receiver), in the model's tone and receiver order;
- a feature vector, shape (n_features,), as :class:`~acoustic_inv.observation.ObservationModel`
  makes it.

A mismatch of the tones, the receiver count or the receiver depths is a
:class:`~acoustic_inv.errors.DataError` that names both sides. Two checks only warn (the warnings are
returned and written with the result):

- *atypical features*: the observation's typicality statistic (a squared Mahalanobis distance per
  feature, :class:`~acoustic_inv.model_metadata.Typicality`) is above the 99.9% quantile of the
  training features': the network is extrapolating;
- *low SNR*: a tone's SNR is below the training SNR range. Training features come from one noisy
  snapshot at the drawn SNR; a recording's principal vector averages ``K`` snapshots, so its
  effective SNR is the per-snapshot SNR plus ``10 log10 K`` dB (for independent snapshots), and that
  is what is compared.

A posterior predictive check (:meth:`Posterior.predictive_check`) re-runs the propagation engine for
posterior draws and scores each replica ``w`` against the observed principal vector ``d`` of each
tone by the normalized Bartlett power ``|w^H d|^2 / (|w|^2 |d|^2)`` (1: the replica explains the
observed field up to a complex factor; about ``1 / n_receiver`` for an unrelated field).

Import cost: this module imports numpy and xarray; torch is imported when a model is loaded, and
the propagation package only for the predictive check.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import xarray as xr

import acoustic_inv
from acoustic_inv.errors import ConfigError, DataError
from acoustic_inv.fileio import atomic_write_netcdf
from acoustic_inv.model_metadata import ModelMetadata
from acoustic_inv.observation import ObservationModel
from acoustic_inv.resources import DATA_DIR
from acoustic_inv.summary import DEFAULT_LEVELS, summarize, summary_table, summary_to_json, write_json

if TYPE_CHECKING:
    from acoustic_inv.models import PosteriorModel
    from acoustic_inv.recordings import Recording
    from acoustic_inv.tonals import TonalEstimate

__all__ = [
    "DEFAULT_MODEL_PATH",
    "InversionResult",
    "Posterior",
    "PosteriorFile",
    "PredictiveCheck",
    "PreparedObservation",
    "bartlett_power",
    "read_posterior",
]

#: The shipped default model (SWellEx-96 scenario).
DEFAULT_MODEL_PATH = DATA_DIR / "models" / "swellex96.pt"
#: Typicality quantile above which an observation is flagged.
TYPICALITY_LEVEL = 0.999
#: Receiver depths of a recording and a model agree when within this, m.
DEPTH_TOLERANCE_M = 0.05
#: Nominal tones of an estimate and a model agree when within this, Hz.
TONE_TOLERANCE_HZ = 1e-6
FILE_FORMAT = "acoustic-inv-posterior"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _fmt_list(values: Sequence[float], limit: int = 8) -> str:
    shown = ", ".join(f"{v:g}" for v in list(values)[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


def bartlett_power(replica: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Normalized Bartlett power between replicas and data, per tone.

    Args:
        replica: Complex replica vectors, shape (..., n_freq, n_receiver), any units.
        data: Complex data vectors, shape (n_freq, n_receiver) (broadcast), any units.

    Returns:
        ``|w^H d|^2 / (|w|^2 |d|^2)``, shape (..., n_freq), in [0, 1]; NaN where a vector is zero.
    """
    w = np.asarray(replica, dtype=complex)
    d = np.asarray(data, dtype=complex)
    inner = np.abs(np.sum(w.conj() * d, axis=-1)) ** 2
    norms = np.sum(np.abs(w) ** 2, axis=-1) * np.sum(np.abs(d) ** 2, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, inner / np.where(norms > 0, norms, 1.0), np.nan)


# ---------------------------------------------------------------------------------------------------
# Observations
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PreparedObservation:
    """An observation checked against a model and turned into the network's input.

    Attributes:
        kind: ``"tonals"``, ``"pressure"`` or ``"features"``: what was given.
        x: Features, shape (n_features,), float64.
        pressure: Complex (principal) pressure vectors, shape (n_freq, n_receiver), arbitrary units;
            for a feature vector, the vectors the features describe (unit norm per tone).
        typicality: The typicality statistic of ``x`` (dimensionless; near 1 for training-like data).
        snr_db: Per-snapshot SNR per tone, shape (n_freq,), dB; None when unknown.
        effective_snr_db: SNR of the averaged principal vector, ``snr_db + 10 log10(n_snapshots)``,
            shape (n_freq,), dB; None when unknown.
        n_snapshots: Snapshots averaged (tonal estimates only).
        freq_measured_hz: Measured (Doppler-shifted) tone frequencies, shape (n_freq,), Hz, or None.
        info: Where it came from (file, window), plain values.
    """

    kind: str
    x: np.ndarray
    pressure: np.ndarray
    typicality: float
    snr_db: np.ndarray | None = None
    effective_snr_db: np.ndarray | None = None
    n_snapshots: int | None = None
    freq_measured_hz: np.ndarray | None = None
    info: Mapping[str, Any] = field(default_factory=dict)


def _csd_snapshots(csd: np.ndarray) -> np.ndarray:
    """Snapshots whose cross-spectral density matrix is ``csd``.

    Args:
        csd: Hermitian matrices, shape (n_freq, n_receiver, n_receiver).

    Returns:
        Shape (n_receiver, n_freq, n_receiver): snapshot ``k`` of tone ``f`` is
        ``sqrt(n_receiver * lambda_k) v_k`` (eigenpairs of ``csd[f]``), so that the mean of
        ``p_k p_k^H`` over ``k`` is ``csd[f]``.
    """
    values, vectors = np.linalg.eigh(np.asarray(csd, dtype=complex))
    n = csd.shape[-1]
    scaled = vectors * np.sqrt(n * np.maximum(values, 0.0))[:, None, :]  # (F, R, K)
    return np.transpose(scaled, (2, 0, 1))


# ---------------------------------------------------------------------------------------------------
# Predictive check and result
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PredictiveCheck:
    """A posterior predictive check: Bartlett power of re-simulated replicas against the data.

    Attributes:
        theta: The posterior draws re-simulated, shape (k, d), in the parameters' units.
        bartlett: Bartlett power per draw and tone, shape (k, n_freq), in [0, 1]; NaN where the
            engine failed.
        freqs_hz: Tones, shape (n_freq,), Hz.
        param_names: Parameter names, shape (d,).
        param_units: Their units, shape (d,).
        errors: Engine error per draw ("" on success), shape (k,).
        engine: The engine that ran.
    """

    theta: np.ndarray
    bartlett: np.ndarray
    freqs_hz: np.ndarray
    param_names: tuple[str, ...]
    param_units: tuple[str, ...]
    errors: tuple[str, ...]
    engine: str

    @property
    def n_failed(self) -> int:
        """Draws whose simulation failed."""
        return sum(1 for e in self.errors if e)

    def tone_stats(self) -> list[dict[str, Any]]:
        """Per tone: median, 5% and 95% quantiles and maximum of the Bartlett power over the draws."""
        out = []
        for j, f in enumerate(self.freqs_hz):
            values = self.bartlett[:, j]
            values = values[np.isfinite(values)]
            if values.size:
                q05, q50, q95 = np.quantile(values, [0.05, 0.5, 0.95])
                out.append({"freq_hz": float(f), "median": float(q50), "q05": float(q05), "q95": float(q95),
                            "max": float(values.max()), "n": int(values.size)})
            else:
                out.append({"freq_hz": float(f), "median": None, "q05": None, "q95": None, "max": None, "n": 0})
        return out

    def table(self) -> str:
        """A fixed-width table: tone, median Bartlett power, its 5-95% range and maximum."""
        lines = [f"posterior predictive check: {len(self.theta)} draws re-simulated with {self.engine}"
                 + (f" ({self.n_failed} failed)" if self.n_failed else ""),
                 f"{'tone (Hz)':>10}  {'Bartlett median':>15}  {'5-95% range':>15}  {'max':>6}",
                 f"{'-' * 10}  {'-' * 15}  {'-' * 15}  {'-' * 6}"]
        for row in self.tone_stats():
            if row["n"] == 0:
                lines.append(f"{row['freq_hz']:>10g}  {'-':>15}  {'-':>15}  {'-':>6}")
                continue
            span = f"[{row['q05']:.3f}, {row['q95']:.3f}]"
            lines.append(f"{row['freq_hz']:>10g}  {row['median']:>15.3f}  {span:>15}  {row['max']:>6.3f}")
        return "\n".join(lines)

    def to_dataset(self) -> xr.Dataset:
        """The check as an ``xarray.Dataset`` (dims ``check_draw``, ``freq``, ``param``)."""
        k = len(self.theta)
        return xr.Dataset(
            {
                "bartlett": (("check_draw", "freq"), self.bartlett,
                             {"units": "1", "long_name": "normalized Bartlett power of replica vs observed vector"}),
                "theta": (("check_draw", "param"), self.theta,
                          {"units": "see units coord", "long_name": "re-simulated posterior draws"}),
                "error": (("check_draw",), np.array(list(self.errors) or [""] * k, dtype=object),
                          {"units": "1", "long_name": "engine error (empty on success)"}),
            },
            coords={"check_draw": ("check_draw", np.arange(k), {"units": "1", "long_name": "check draw index"}),
                    "freq": ("freq", np.asarray(self.freqs_hz), {"units": "Hz", "long_name": "tone frequency"}),
                    "param": ("param", list(self.param_names), {"long_name": "parameter name"}),
                    "units": ("param", list(self.param_units), {"long_name": "parameter units"})},
            attrs={"engine": self.engine, "n_failed": self.n_failed,
                   "long_name": "posterior predictive check"})

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values: per-tone statistics, draws and failures."""
        return {"engine": self.engine, "n_draws": int(len(self.theta)), "n_failed": self.n_failed,
                "tones": self.tone_stats(),
                "bartlett": [[None if not math.isfinite(v) else float(v) for v in row] for row in self.bartlett]}


@dataclass(eq=False)
class InversionResult:
    """Posterior draws of one observation with their summary, warnings and provenance.

    Attributes:
        samples: Draws, ``DataArray(draw, param)`` with a ``units`` coordinate on ``param``.
        summary: :func:`acoustic_inv.summary.summarize` of the draws.
        warnings: Out-of-distribution warnings, one line each.
        metadata: Provenance (model, scenario, seed, observation, ...), plain values.
        observation: The prepared observation.
        check: The posterior predictive check, when one was run.
    """

    samples: xr.DataArray
    summary: xr.Dataset
    warnings: list[str]
    metadata: dict[str, Any]
    observation: PreparedObservation
    check: PredictiveCheck | None = None

    def table(self) -> str:
        """The summary table (parameter, units, mean, median, credible intervals)."""
        return summary_table(self.summary)

    # -- netCDF --------------------------------------------------------------------------------

    def _posterior_group(self) -> xr.Dataset:
        values = np.asarray(self.samples.transpose("draw", "param").values, dtype=np.float64)
        names = [str(p) for p in self.samples["param"].values]
        units = [str(u) for u in self.samples["units"].values]
        long_names = (list(self.samples["long_name"].values) if "long_name" in self.samples.coords else names)
        data_vars = {name: (("chain", "draw"), values[None, :, j], {"units": units[j], "long_name": str(long_names[j])})
                     for j, name in enumerate(names)}
        n = values.shape[0]
        return xr.Dataset(
            data_vars,
            coords={"chain": ("chain", np.array([0]), {"units": "1", "long_name": "chain index"}),
                    "draw": ("draw", np.arange(n), {"units": "1", "long_name": "draw index"})},
            attrs={"created_at": self.metadata.get("created", _now()), "inference_library": "acoustic-inv",
                   "inference_library_version": acoustic_inv.__version__,
                   "long_name": "posterior draws (amortized neural posterior)"})

    def _observed_group(self) -> xr.Dataset:
        obs = self.observation
        meta = self.metadata
        freqs = np.asarray(meta["freqs_hz"])
        depths = np.asarray(meta["receiver_depths_m"])
        coords = {
            "freq": ("freq", freqs, {"units": "Hz", "long_name": "nominal tone frequency"}),
            "receiver": ("receiver", np.arange(len(depths)),
                         {"units": "1", "long_name": "receiver index, shallow to deep"}),
            "depth": ("receiver", depths, {"units": "m", "long_name": "receiver depth"}),
            "feature": ("feature", list(meta["feature_names"]), {"long_name": "feature name"}),
        }
        data_vars: dict[str, Any] = {
            "x": (("feature",), obs.x, {"units": "1", "long_name": "observation features (network input)"}),
            "pressure_real": (("freq", "receiver"), obs.pressure.real,
                              {"units": "arbitrary", "long_name": "observed principal vector, real part"}),
            "pressure_imag": (("freq", "receiver"), obs.pressure.imag,
                              {"units": "arbitrary", "long_name": "observed principal vector, imaginary part"}),
        }
        if obs.snr_db is not None:
            data_vars["snr_db"] = (("freq",), obs.snr_db, {"units": "dB", "long_name": "SNR per snapshot"})
        if obs.effective_snr_db is not None:
            data_vars["effective_snr_db"] = (("freq",), obs.effective_snr_db,
                                             {"units": "dB", "long_name": "SNR of the snapshot-averaged vector"})
        if obs.freq_measured_hz is not None:
            data_vars["freq_measured_hz"] = (("freq",), obs.freq_measured_hz,
                                             {"units": "Hz", "long_name": "measured (Doppler-shifted) tone frequency"})
        attrs = {"kind": obs.kind, "typicality": float(obs.typicality),
                 "typicality_threshold": float(meta["typicality_threshold"]),
                 "long_name": "the observation inverted"}
        for key, value in obs.info.items():
            if value is not None:
                attrs[key] = value
        if obs.n_snapshots is not None:
            attrs["n_snapshots"] = int(obs.n_snapshots)
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)

    def _root_attrs(self) -> dict[str, Any]:
        meta = self.metadata
        return {
            "format": FILE_FORMAT, "created": meta.get("created", ""), "acoustic_inv_version": acoustic_inv.__version__,
            "model_path": meta["model"]["path"], "model_content_sha256": meta["model"]["content_sha256"] or "",
            "scenario": meta["scenario"]["name"], "scenario_sha256": meta["scenario"]["sha256"],
            "seed": int(meta["seed"]), "n_draws": int(meta["n_draws"]), "levels": list(meta["levels"]),
            "warnings": "\n".join(self.warnings),
            "groups": "posterior: draws (chain, draw), one variable per parameter; summary: point estimates and "
                      "credible intervals; observed_data: the observation; predictive_check: Bartlett powers",
        }

    def to_netcdf(self, path: str | os.PathLike[str]) -> Path:
        """Writes the result as netCDF-4 (atomically) in the InferenceData layout.

        Groups: ``posterior`` (one variable per parameter, dims (chain, draw), one chain), so that
        ``arviz.from_netcdf`` reads it; ``summary`` (the summary dataset); ``observed_data`` (features,
        principal vectors, SNRs, window); ``predictive_check`` when a check was run. The root group
        holds the provenance as attributes (model, scenario, seed, warnings).

        Returns:
            The path written.
        """
        groups = {"posterior": self._posterior_group(), "summary": self.summary,
                  "observed_data": self._observed_group()}
        if self.check is not None:
            groups["predictive_check"] = self.check.to_dataset()
        return atomic_write_netcdf(Path(path), xr.Dataset(attrs=self._root_attrs()), groups)

    # -- JSON ----------------------------------------------------------------------------------

    def to_json_dict(self) -> dict[str, Any]:
        """The result as plain JSON values (summary, warnings, provenance; no draws)."""
        obs = self.observation
        observation = {"kind": obs.kind, "typicality": float(obs.typicality),
                       "typicality_threshold": float(self.metadata["typicality_threshold"]), **dict(obs.info)}
        if obs.snr_db is not None:
            observation["snr_db"] = [float(v) for v in obs.snr_db]
        if obs.effective_snr_db is not None:
            observation["effective_snr_db"] = [float(v) for v in obs.effective_snr_db]
        if obs.n_snapshots is not None:
            observation["n_snapshots"] = int(obs.n_snapshots)
        if obs.freq_measured_hz is not None:
            observation["freq_measured_hz"] = [float(v) for v in obs.freq_measured_hz]
        meta = self.metadata
        return {
            "format": FILE_FORMAT, "created": meta.get("created"), "acoustic_inv_version": acoustic_inv.__version__,
            "model": meta["model"], "scenario": meta["scenario"], "seed": int(meta["seed"]),
            "n_draws": int(meta["n_draws"]), "levels": list(meta["levels"]),
            "freqs_hz": list(meta["freqs_hz"]), "receiver_depths_m": list(meta["receiver_depths_m"]),
            "observation": observation, "warnings": list(self.warnings),
            "summary": summary_to_json(self.summary),
            "predictive_check": None if self.check is None else self.check.to_json(),
        }

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Writes :meth:`to_json_dict` atomically; returns the path."""
        return write_json(path, self.to_json_dict())


@dataclass(frozen=True, eq=False)
class PosteriorFile:
    """A posterior file read back (see :func:`read_posterior`).

    Attributes:
        samples: Draws, ``DataArray(draw, param)`` (chains stacked), ``units`` coordinate on param.
        summary: The summary dataset.
        observed: The ``observed_data`` group.
        check: The ``predictive_check`` group, or None.
        attrs: The root attributes (provenance).
        path: The file.
    """

    samples: xr.DataArray
    summary: xr.Dataset
    observed: xr.Dataset
    check: xr.Dataset | None
    attrs: Mapping[str, Any]
    path: Path


def read_posterior(path: str | os.PathLike[str]) -> PosteriorFile:
    """Reads a file written by :meth:`InversionResult.to_netcdf`.

    Raises:
        DataError: naming the file when it is missing, not netCDF or not a posterior file.
    """
    import netCDF4

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with netCDF4.Dataset(path) as nc:
            attrs = {key: nc.getncattr(key) for key in nc.ncattrs()}
            groups = set(nc.groups)
    except OSError as error:
        raise DataError(f"{path}: cannot read as a posterior file ({str(error).splitlines()[0]})") from None
    if attrs.get("format") != FILE_FORMAT:
        raise DataError(f"{path}: not an acoustic-inv posterior file (format attribute {attrs.get('format')!r}, "
                        f"expected {FILE_FORMAT!r})")
    missing = sorted({"posterior", "summary", "observed_data"} - groups)
    if missing:
        raise DataError(f"{path}: incomplete posterior file, missing group(s) {missing}")
    loaded = {}
    for group in ("posterior", "summary", "observed_data", "predictive_check"):
        if group in groups:
            with xr.open_dataset(path, group=group, engine="netcdf4") as ds:
                loaded[group] = ds.load()
    posterior = loaded["posterior"]
    summary, observed, check = loaded["summary"], loaded["observed_data"], loaded.get("predictive_check")
    names = list(posterior.data_vars)
    stacked = np.stack([posterior[name].values.reshape(-1) for name in names], axis=1)
    samples = xr.DataArray(
        stacked, dims=("draw", "param"),
        coords={"draw": np.arange(stacked.shape[0]), "param": names,
                "units": ("param", [str(posterior[n].attrs.get("units", "")) for n in names]),
                "long_name": ("param", [str(posterior[n].attrs.get("long_name", n)) for n in names])},
        attrs={"units": "see units coord", "long_name": "posterior draws"})
    return PosteriorFile(samples, summary, observed, check, attrs, path)


# ---------------------------------------------------------------------------------------------------
# The posterior
# ---------------------------------------------------------------------------------------------------


class Posterior:
    """A trained amortized posterior with the metadata needed to invert recordings.

    Args:
        model: The network with its fitted transforms.
        metadata: The model's inversion metadata.
        path: Where the model was read from (for messages and provenance).
        content_sha256: The model file's content hash, if any.

    Use :meth:`load` to read a model file.
    """

    def __init__(self, model: "PosteriorModel", metadata: ModelMetadata, path: str = "<memory>",
                 content_sha256: str | None = None) -> None:
        if tuple(model.param_names) != metadata.param_names:
            raise DataError(f"{path}: the network's parameters {list(model.param_names)} are not the metadata's "
                            f"{list(metadata.param_names)}")
        observation = metadata.observation_model()
        if TYPICALITY_LEVEL not in metadata.typicality.levels:
            raise DataError(f"{path}: the typicality statistics lack the {TYPICALITY_LEVEL} quantile (levels "
                            f"{list(metadata.typicality.levels)})")
        if model.n_features != observation.n_features:
            raise DataError(f"{path}: the network takes {model.n_features} features but the stored "
                            f"observation layout gives {observation.n_features}")
        self.model = model
        self.metadata = metadata
        self.path = str(path)
        self.content_sha256 = content_sha256
        self.observation_model: ObservationModel = observation

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, *, device: str = "cpu") -> Posterior:
        """Reads a model file written by ``acoustic-inv train``.

        Args:
            path: The model file; None for the shipped default, ``data/models/swellex96.pt``.
            device: Where to put the network (``"cpu"`` or ``"cuda"``).

        Raises:
            DataError: for a missing, unreadable, foreign, old or changed file, or one without
                inversion metadata; the message names the file and what to do.
        """
        if path is None:
            path = DEFAULT_MODEL_PATH
            if not Path(path).is_file():
                raise DataError(
                    f"{path}: the default SWellEx-96 model is not installed. Train it: `acoustic-inv simulate "
                    "--scenario swellex96 -n 20000 --out datasets/swellex96 --workers 2 --seed 0`, then `acoustic-inv train "
                    f"--data datasets/swellex96 --config data/models/swellex96-train.toml --out {path}`; or pass --model MODEL.pt")
        from acoustic_inv.checkpoint import load_model

        model = load_model(path, device=device)
        metadata = ModelMetadata.from_record(getattr(model, "metadata", None), path)
        return cls(model, metadata, str(path), getattr(model, "content_sha256", None))

    # -- facts ---------------------------------------------------------------------------------

    @property
    def param_names(self) -> tuple[str, ...]:
        """Parameter names, in column order of the draws."""
        return self.metadata.param_names

    @property
    def param_units(self) -> tuple[str, ...]:
        """Units of the parameters."""
        return self.metadata.param_units

    @property
    def freqs_hz(self) -> tuple[float, ...]:
        """The model's tones, Hz."""
        return self.metadata.freqs_hz

    @property
    def receiver_depths_m(self) -> tuple[float, ...]:
        """The model's receiver depths, m."""
        return self.metadata.receiver_depths_m

    def _describe(self) -> str:
        return f"model {self.path} (scenario {self.metadata.scenario_name!r})"

    # -- checks --------------------------------------------------------------------------------

    def check_recording(self, recording: "Recording") -> list[str]:
        """Checks a recording's channels, depths and declared tones against the model.

        Returns:
            Warnings (e.g. the recording gives no depths, so the model's are assumed).

        Raises:
            DataError: naming both sides for a channel count, depth list or tone list that does not
                match the model.
        """
        where = recording.path or "<recording>"
        warnings = []
        n_model = len(self.receiver_depths_m)
        if recording.n_receiver != n_model:
            raise DataError(f"{where}: {recording.n_receiver} channels, but {self._describe()} expects "
                            f"{n_model} receivers at depths {_fmt_list(self.receiver_depths_m)} m")
        if recording.receiver_depths_m is None:
            warnings.append(f"{where} gives no receiver depths; assuming the model's "
                            f"{_fmt_list(self.receiver_depths_m)} m, shallow to deep")
        else:
            self._check_depths(recording.receiver_depths_m, where)
        if recording.source_tones_hz is not None:
            declared = np.asarray(recording.source_tones_hz)
            missing = [f for f in self.freqs_hz if not np.any(np.abs(declared - f) <= 0.5)]
            if missing:
                raise DataError(f"{where}: its source tones {_fmt_list(declared, 16)} Hz lack "
                                f"{_fmt_list(missing)} Hz of the tones {_fmt_list(self.freqs_hz)} Hz that "
                                f"{self._describe()} was trained on")
        return warnings

    def _check_depths(self, depths: Sequence[float], where: str) -> None:
        model = np.asarray(self.receiver_depths_m)
        given = np.asarray(depths, dtype=float)
        if given.shape != model.shape or not np.allclose(given, model, rtol=0.0, atol=DEPTH_TOLERANCE_M):
            raise DataError(f"{where}: receiver depths {_fmt_list(given)} m do not match the depths "
                            f"{_fmt_list(model)} m of {self._describe()}")

    def _check_tones(self, tones: Sequence[float], where: str) -> None:
        model = np.asarray(self.freqs_hz)
        given = np.asarray(tones, dtype=float)
        if given.shape != model.shape or not np.allclose(given, model, rtol=0.0, atol=TONE_TOLERANCE_HZ):
            raise DataError(f"{where}: tones {_fmt_list(given)} Hz do not match the tones "
                            f"{_fmt_list(model)} Hz of {self._describe()}")

    # -- observations --------------------------------------------------------------------------

    def prepare(self, observation: Any) -> PreparedObservation:
        """Checks an observation against the model and computes its features.

        Args:
            observation: A :class:`~acoustic_inv.tonals.TonalEstimate`, complex pressure of shape
                (n_freq, n_receiver) (an array, or a DataArray with dims ``freq`` and ``receiver``),
                or a feature vector of shape (n_features,).

        Raises:
            DataError: for tones, receivers or shapes that do not match the model, or non-finite values.
        """
        from acoustic_inv.tonals import TonalEstimate

        obs_model = self.observation_model
        n_freq, n_rec = obs_model.n_freq, obs_model.n_receiver
        if isinstance(observation, TonalEstimate):
            where = observation.source_file or "<tonal estimate>"
            if observation.n_receiver != n_rec:
                raise DataError(f"{where}: {observation.n_receiver} receivers, but {self._describe()} expects "
                                f"{n_rec} at depths {_fmt_list(self.receiver_depths_m)} m")
            self._check_tones(observation.freq_nominal_hz, where)
            if observation.receiver_depths_m is not None:
                self._check_depths(observation.receiver_depths_m, where)
            if obs_model.features == "pressure":
                raise DataError(f"{self._describe()} uses 'pressure' features (a calibrated source of known "
                                "level and phase, synthetic studies only); a recording's tones have an arbitrary "
                                "level and phase")
            pressure = np.asarray(observation.pressure, dtype=complex)
            if obs_model.features == "csdm":
                x = obs_model.features_from_snapshots(_csd_snapshots(observation.csd))
            else:
                x = obs_model.features_from_pressure(pressure)
            snr = np.asarray(observation.snr_db, dtype=float)
            n_snap = int(observation.n_snapshots)
            info = {"source_file": observation.source_file, "start_time_s": float(observation.start_time_s),
                    "duration_s": float(observation.duration_s), "snapshot_s": float(observation.snapshot_s)}
            return self._finish("tonals", x, pressure, snr, snr + 10.0 * math.log10(max(n_snap, 1)), n_snap,
                                np.asarray(observation.freq_measured_hz, dtype=float), info)
        if isinstance(observation, xr.DataArray) and {"freq", "receiver"} <= set(observation.dims):
            observation = observation.transpose("freq", "receiver")  # e.g. from propagation.pressure
        array = np.asarray(observation)
        if np.iscomplexobj(array):
            if array.shape != (n_freq, n_rec):
                raise DataError(f"pressure of shape {array.shape}: {self._describe()} expects (n_freq, n_receiver) = "
                                f"({n_freq}, {n_rec}) for tones {_fmt_list(self.freqs_hz)} Hz and receivers at "
                                f"{_fmt_list(self.receiver_depths_m)} m")
            pressure = array.astype(complex)
            if not np.all(np.isfinite(pressure)):
                raise DataError("pressure holds NaN or infinite values")
            return self._finish("pressure", obs_model.features_from_pressure(pressure), pressure)
        if array.ndim == 1 and np.issubdtype(array.dtype, np.number):
            if array.shape != (obs_model.n_features,):
                raise DataError(f"feature vector of length {array.shape[0]}: {self._describe()} takes "
                                f"{obs_model.n_features} features ({obs_model.features}, {n_freq} tones x "
                                f"{n_rec} receivers)")
            x = array.astype(np.float64)
            if not np.all(np.isfinite(x)):
                raise DataError("feature vector holds NaN or infinite values")
            return self._finish("features", x, self._pressure_from_features(x))
        raise DataError(f"observation of type {type(observation).__name__} and shape {array.shape}: expected a "
                        f"TonalEstimate, complex pressure ({n_freq}, {n_rec}) or features ({obs_model.n_features},)")

    def _finish(self, kind: str, x: np.ndarray, pressure: np.ndarray, snr: np.ndarray | None = None,
                effective: np.ndarray | None = None, n_snap: int | None = None,
                freq_measured: np.ndarray | None = None, info: Mapping[str, Any] | None = None) -> PreparedObservation:
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise DataError("the observation's features are not finite (a zero pressure vector?)")
        typicality = float(self.metadata.typicality.statistic(x))
        return PreparedObservation(kind, x, pressure, typicality, snr, effective, n_snap, freq_measured,
                                   dict(info or {}))

    def _pressure_from_features(self, x: np.ndarray) -> np.ndarray:
        """The pressure vectors a feature vector describes (up to a complex factor per tone)."""
        obs = self.observation_model
        n_freq, n = obs.n_freq, obs.n_receiver
        per_tone = x.reshape(n_freq, obs.features_per_tone)
        if obs.features == "pressure":
            return per_tone[:, :n] + 1j * per_tone[:, n:]
        if obs.features == "unit_pressure":
            imag = np.insert(per_tone[:, n:], obs.reference_receiver, 0.0, axis=1)
            return per_tone[:, :n] + 1j * imag
        rows, cols = np.triu_indices(n, k=1)
        n_upper = len(rows)
        csd = np.zeros((n_freq, n, n), dtype=complex)
        csd[:, np.arange(n), np.arange(n)] = per_tone[:, :n]
        upper = per_tone[:, n:n + n_upper] + 1j * per_tone[:, n + n_upper:]
        csd[:, rows, cols] = upper
        csd[:, cols, rows] = upper.conj()
        values, vectors = np.linalg.eigh(csd)
        return vectors[..., -1] * np.sqrt(np.maximum(values[..., -1], 0.0))[:, None]

    def observation_warnings(self, prepared: PreparedObservation) -> list[str]:
        """Out-of-distribution warnings for a prepared observation (see the module docstring)."""
        warnings = []
        typ = self.metadata.typicality
        threshold = typ.threshold(TYPICALITY_LEVEL)
        if prepared.typicality > threshold:
            median = dict(zip(typ.levels, typ.quantiles)).get(0.5)
            typical = f", median {median:.3g}" if median is not None else ""
            warnings.append(
                f"the observation is atypical of the training data: feature typicality {prepared.typicality:.3g} "
                f"is above the training {TYPICALITY_LEVEL:.1%} quantile {threshold:.3g}{typical}; the network is "
                "extrapolating, so the posterior may be wrong (environment or array outside the scenario, "
                "interference, wrong channel metadata?)")
        snr_range = self.metadata.snr_db_range
        if prepared.effective_snr_db is not None and snr_range is not None:
            low, high = snr_range
            for f, snr, eff in zip(self.freqs_hz, prepared.snr_db, prepared.effective_snr_db):
                if eff < low:
                    warnings.append(
                        f"tone {f:g} Hz: SNR {eff:.1f} dB ({snr:.1f} dB per snapshot over {prepared.n_snapshots} "
                        f"snapshots) is below the training SNR range [{low:g}, {high:g}] dB; the posterior may be "
                        "too narrow or biased")
        return warnings

    # -- sampling ------------------------------------------------------------------------------

    def _draws(self, prepared: PreparedObservation, n: int, seed: int | None) -> xr.DataArray:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"number of draws n = {n!r}: expected a positive integer")
        theta = self.model.sample(prepared.x, int(n), seed=seed).numpy()
        return xr.DataArray(
            theta, dims=("draw", "param"),
            coords={"draw": ("draw", np.arange(int(n)), {"units": "1", "long_name": "draw index"}),
                    "param": ("param", list(self.param_names), {"long_name": "parameter name"}),
                    "units": ("param", list(self.param_units), {"long_name": "parameter units"}),
                    "long_name": ("param", list(self.metadata.param_long_names), {"long_name": "parameter long name"})},
            name="theta", attrs={"units": "see units coord", "long_name": "posterior draws"})

    def sample(self, observation: Any, n: int, seed: int | None = None) -> xr.DataArray:
        """Posterior draws for one observation.

        Args:
            observation: A tonal estimate, complex pressure (n_freq, n_receiver) or features (n_features,).
            n: Number of draws.
            seed: Seed of the draws (None: torch's global generator).

        Returns:
            ``DataArray(draw, param)`` in the parameters' units, with ``units`` and ``long_name``
            coordinates on ``param``.
        """
        return self._draws(self.prepare(observation), n, seed)

    def summary(self, samples: xr.DataArray, levels: Sequence[float] = DEFAULT_LEVELS) -> xr.Dataset:
        """Point estimates and credible intervals of draws (:func:`acoustic_inv.summary.summarize`)."""
        try:
            return summarize(samples, levels)
        except ValueError as error:
            raise ConfigError(str(error)) from None

    def invert(self, observation: Any, n: int = 10_000, levels: Sequence[float] = DEFAULT_LEVELS,
               seed: int | None = None) -> InversionResult:
        """Draws, summarizes and checks the posterior of one observation.

        Args:
            observation: A tonal estimate, complex pressure (n_freq, n_receiver) or features (n_features,).
            n: Number of draws.
            levels: Credible levels of the intervals.
            seed: Seed of the draws; None picks one at random (recorded in the result, so the run
                can be repeated).

        Returns:
            The :class:`InversionResult` (its ``warnings`` list the out-of-distribution checks that fired).
        """
        prepared = self.prepare(observation)
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])
        samples = self._draws(prepared, n, seed)
        summary = self.summary(samples, levels)
        warnings = self.observation_warnings(prepared)
        metadata = {
            "created": _now(),
            "model": {"path": self.path, "content_sha256": self.content_sha256,
                      "architecture": self.model.architecture,
                      "training_data": dict(self.metadata.training_data)},
            "scenario": {"name": self.metadata.scenario_name, "sha256": self.metadata.scenario_sha256},
            "seed": int(seed), "n_draws": int(n), "levels": [float(q) for q in levels],
            "freqs_hz": list(self.freqs_hz), "receiver_depths_m": list(self.receiver_depths_m),
            "feature_names": self.observation_model.feature_names(),
            "typicality_threshold": self.metadata.typicality.threshold(TYPICALITY_LEVEL),
        }
        return InversionResult(samples, summary, warnings, metadata, prepared)

    # -- posterior predictive check ------------------------------------------------------------

    def predictive_check(self, result: InversionResult, k: int, *, runner: Callable[..., Any] | None = None,
                         progress: Callable[[int, int], None] | None = None) -> PredictiveCheck:
        """Re-simulates ``k`` posterior draws and scores them against the observation.

        Args:
            result: An inversion result (its first ``k`` draws are used; draws are independent).
            k: Number of draws to re-simulate (each costs one engine run).
            runner: Forward model replacing :func:`propagation.pressure` (tests only).
            progress: Called with (done, k) after each draw.

        Returns:
            The :class:`PredictiveCheck`; engine failures are recorded, not raised.

        Raises:
            ConfigError: for ``k`` < 1 or a scenario whose engine is not installed.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"--check {k!r}: expected a positive number of draws")
        from acoustic_inv.simulation import Simulator
        from propagation.errors import EngineNotFoundError, PropagationError, UnsupportedEnvironmentError

        scenario = self.metadata.scenario()
        simulator = Simulator(scenario, runner=runner)
        theta = np.asarray(result.samples.transpose("draw", "param").values[: int(k)], dtype=np.float64)
        n_freq = len(self.freqs_hz)
        bartlett = np.full((len(theta), n_freq), np.nan)
        errors = []
        for i, row in enumerate(theta):
            try:
                replica = simulator.run_engine(row)
            except (EngineNotFoundError, UnsupportedEnvironmentError) as error:
                raise ConfigError(f"scenario {scenario.name!r}: {str(error).splitlines()[0]}") from None
            except PropagationError as error:
                errors.append(f"{type(error).__name__}: {str(error).splitlines()[0]}")
            else:
                bartlett[i] = bartlett_power(replica, result.observation.pressure)
                errors.append("")
            if progress is not None:
                progress(i + 1, len(theta))
        engine = scenario.engine.name if runner is None else getattr(runner, "__name__", "a custom runner")
        check = PredictiveCheck(theta, bartlett, np.asarray(self.freqs_hz), self.param_names, self.param_units,
                                tuple(errors), engine)
        result.check = check
        return check

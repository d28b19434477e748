"""What a model file must carry for inversion: its scenario, observation layout and training ranges.

A network alone maps feature vectors to posteriors. To invert a *recording* safely, the model file
also holds (under the key ``"inversion"``, written by ``acoustic-inv train``):

- the scenario the training data were simulated from: its TOML text, name and SHA-256 (so the
  forward model can be re-run for a posterior predictive check);
- the observation layout: feature kind, phase-reference element, tones (Hz) and receiver depths (m),
  which a recording must match;
- the training SNR range (dB) of the scenario's noise model;
- typicality statistics of the training features (:class:`Typicality`), against which an
  observation is flagged as out of distribution.

Everything is stored as plain ``str``/``int``/``float``/``list``/``dict`` values and tensors, so the
file still loads with ``torch.load(weights_only=True)``.

This module imports neither torch nor the propagation package at import time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from acoustic_inv.errors import DataError
from acoustic_inv.observation import ObservationModel

if TYPE_CHECKING:
    from acoustic_inv.scenario import Scenario
    from acoustic_inv.sources import DataSource

__all__ = ["METADATA_VERSION", "ModelMetadata", "Typicality", "fit_typicality", "metadata_for_dataset"]

METADATA_VERSION = 1
#: Quantile levels of the typicality statistic stored in a model file.
TYPICALITY_LEVELS: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)
#: Ridge added to the feature correlation matrix before whitening (in units of the per-feature variance).
TYPICALITY_RIDGE = 1e-3


@dataclass(frozen=True, eq=False)
class Typicality:
    """How typical a feature vector is of the training features.

    The statistic is the mean squared *whitened* feature, ``t(x) = |W (x - mean)|^2 / m``, where
    ``W = L^-1 D^-1``: ``D`` holds the per-feature standard deviations of the training split and
    ``L L^T = C + ridge I`` is the Cholesky factor of their correlation matrix ``C`` with a small ridge
    (the invariant features obey exact constraints, e.g. unit norm per tone, so ``C`` is singular).
    It is a squared Mahalanobis distance per feature: for uncorrelated features it is the mean
    squared standardized feature, and a training-like observation gives ``t`` near 1. Its quantiles
    are taken over the *validation* split (held out from the fit of ``W``), so the 99.9% quantile is
    an honest threshold beyond which fewer than 1 in 1000 training-like observations fall. It is a
    Gaussian summary of the feature distribution: gross departures (noise only, wrong channels,
    another environment) show; a subtle one inside the ellipsoid does not.

    Attributes:
        mean: Training mean of the features, shape (m,), in the features' units.
        whitening: ``W``, shape (m, m), in inverse feature units.
        levels: Quantile levels, increasing, in (0, 1).
        quantiles: The statistic's quantiles at ``levels`` over the validation split (dimensionless).
        n_train: Training feature vectors used for ``mean`` and ``W``.
        n_val: Validation feature vectors used for the quantiles.
    """

    mean: np.ndarray
    whitening: np.ndarray
    levels: tuple[float, ...]
    quantiles: tuple[float, ...]
    n_train: int
    n_val: int

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float64)
        whitening = np.asarray(self.whitening, dtype=np.float64)
        m = mean.shape[0] if mean.ndim == 1 else -1
        if m < 1 or whitening.shape != (m, m):
            raise DataError(f"Typicality: mean of shape {mean.shape} and whitening of shape {whitening.shape} "
                            "do not describe m features")
        if len(self.levels) != len(self.quantiles) or not self.levels:
            raise DataError(f"Typicality: {len(self.levels)} levels but {len(self.quantiles)} quantiles")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "whitening", whitening)
        object.__setattr__(self, "levels", tuple(float(q) for q in self.levels))
        object.__setattr__(self, "quantiles", tuple(float(v) for v in self.quantiles))

    @property
    def n_features(self) -> int:
        """Number of features m."""
        return int(self.mean.shape[0])

    def statistic(self, x: np.ndarray) -> np.ndarray:
        """The typicality statistic of feature vectors.

        Args:
            x: Features, shape (..., m), in the features' units.

        Returns:
            ``t(x)``, shape (...), dimensionless (near 1 for training-like features).
        """
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1:] != (self.n_features,):
            raise DataError(f"typicality: expected features of shape (..., {self.n_features}), got {x.shape}")
        white = (x - self.mean) @ self.whitening.T
        return np.mean(white**2, axis=-1)

    def threshold(self, level: float = 0.999) -> float:
        """The stored quantile at ``level`` (one of :attr:`levels`)."""
        for q, value in zip(self.levels, self.quantiles):
            if abs(q - level) < 1e-12:
                return value
        raise KeyError(f"no typicality quantile at level {level}; stored levels are {list(self.levels)}")

    def to_record(self) -> dict[str, Any]:
        """Plain values and tensors for a model file."""
        import torch

        return {"statistic": "mean_squared_whitened_feature", "mean": torch.from_numpy(self.mean.copy()),
                "whitening": torch.from_numpy(self.whitening.astype(np.float32)), "levels": list(self.levels),
                "quantiles": list(self.quantiles), "n_train": int(self.n_train), "n_val": int(self.n_val)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Typicality:
        """Inverse of :meth:`to_record` (tensors or arrays accepted)."""
        return cls(mean=np.asarray(record["mean"], dtype=np.float64),
                   whitening=np.asarray(record["whitening"], dtype=np.float64),
                   levels=tuple(record["levels"]), quantiles=tuple(record["quantiles"]),
                   n_train=int(record["n_train"]), n_val=int(record["n_val"]))


def fit_typicality(train_blocks: Iterable[np.ndarray], val_blocks: Iterable[np.ndarray], *,
                   levels: Sequence[float] = TYPICALITY_LEVELS, ridge: float = TYPICALITY_RIDGE) -> Typicality:
    """Fits :class:`Typicality` in one streamed pass over each split.

    Args:
        train_blocks: Training features, blocks of shape (k, m): mean, spread and correlation.
        val_blocks: Validation features, blocks of shape (k, m): the quantiles of the statistic.
        levels: Quantile levels to store.
        ridge: Added to the diagonal of the correlation matrix (dimensionless, > 0).

    Raises:
        DataError: when a split is empty or holds a non-finite value.
    """
    count = 0
    total: np.ndarray | None = None
    outer: np.ndarray | None = None
    shift: np.ndarray | None = None
    for block in train_blocks:
        x = np.asarray(block, dtype=np.float64)
        if x.size == 0:
            continue
        if not np.isfinite(x).all():
            raise DataError("typicality: training features hold a NaN or infinite value")
        if shift is None:  # centre on the first row to keep the sums well conditioned
            shift = x[0].copy()
            total = np.zeros(x.shape[1])
            outer = np.zeros((x.shape[1], x.shape[1]))
        centred = x - shift
        total += centred.sum(axis=0)
        outer += centred.T @ centred
        count += x.shape[0]
    if count < 2 or shift is None or total is None or outer is None:
        raise DataError(f"typicality: need at least 2 training feature vectors, got {count}")
    mean_c = total / count
    cov = outer / count - np.outer(mean_c, mean_c)
    std = np.sqrt(np.maximum(np.diag(cov), 0.0))
    scale = np.where(std > 1e-12 * max(1.0, float(std.max())), std, 1.0)
    corr = cov / np.outer(scale, scale)
    corr = 0.5 * (corr + corr.T) + ridge * np.eye(len(scale))
    chol = np.linalg.cholesky(corr)
    # Stored as float32 (m^2 numbers: 4.9 million for 21 receivers x 5 tones of CSDM features); the
    # quantiles below use the rounded matrix, so they match what a loaded model computes.
    whitening = np.linalg.solve(chol, np.diag(1.0 / scale)).astype(np.float32).astype(np.float64)
    typical = Typicality(mean_c + shift, whitening, tuple(levels), tuple(0.0 for _ in levels), count, 0)
    values = [typical.statistic(np.asarray(b, dtype=np.float64)) for b in val_blocks if len(b)]
    if not values:
        raise DataError("typicality: the validation split is empty")
    stats = np.concatenate(values)
    if not np.isfinite(stats).all():
        raise DataError("typicality: validation features hold a NaN or infinite value")
    return Typicality(typical.mean, whitening, tuple(levels), tuple(np.quantile(stats, levels)), count, len(stats))


@dataclass(frozen=True, eq=False)
class ModelMetadata:
    """The inversion metadata of a model file (see the module docstring).

    Attributes:
        scenario_name: Name of the training scenario.
        scenario_sha256: SHA-256 of its text.
        scenario_text: Its TOML text.
        features: Feature kind (``unit_pressure``, ``csdm`` or ``pressure``).
        reference_receiver: Phase-reference element (index).
        freqs_hz: Tones, shape (n_freq,), Hz.
        receiver_depths_m: Receiver depths, shape (n_receiver,), m, as in the scenario.
        snr_db_range: (low, high) of the training per-sample SNR, dB; None without noise.
        typicality: Typicality statistics of the training features.
        param_names: Parameter names, in the network's order.
        param_units: Their units.
        param_long_names: Their human-readable names.
        training_data: Facts about the training dataset (path, samples, seed, ...), plain values.
    """

    scenario_name: str
    scenario_sha256: str
    scenario_text: str
    features: str
    reference_receiver: int
    freqs_hz: tuple[float, ...]
    receiver_depths_m: tuple[float, ...]
    snr_db_range: tuple[float, float] | None
    typicality: Typicality
    param_names: tuple[str, ...]
    param_units: tuple[str, ...]
    param_long_names: tuple[str, ...]
    training_data: Mapping[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "freqs_hz", tuple(float(f) for f in self.freqs_hz))
        object.__setattr__(self, "receiver_depths_m", tuple(float(z) for z in self.receiver_depths_m))
        if self.snr_db_range is not None:
            low, high = (float(v) for v in self.snr_db_range)
            object.__setattr__(self, "snr_db_range", (low, high))
        object.__setattr__(self, "param_names", tuple(self.param_names))
        object.__setattr__(self, "param_units", tuple(self.param_units))
        object.__setattr__(self, "param_long_names", tuple(self.param_long_names))
        if not len(self.param_names) == len(self.param_units) == len(self.param_long_names):
            raise DataError(f"model metadata: {len(self.param_names)} parameter names, {len(self.param_units)} "
                            f"units and {len(self.param_long_names)} long names")
        digest = hashlib.sha256(self.scenario_text.encode("utf-8")).hexdigest()
        if digest != self.scenario_sha256:
            raise DataError(f"model metadata: the scenario text's SHA-256 {digest[:12]}... is not the recorded "
                            f"{self.scenario_sha256[:12]}...")
        if self.typicality.n_features != self.observation_model().n_features:
            raise DataError(f"model metadata: typicality statistics describe {self.typicality.n_features} "
                            f"features, the observation layout {self.observation_model().n_features}")

    def observation_model(self) -> ObservationModel:
        """The observation model the network was trained on."""
        return ObservationModel(self.freqs_hz, self.receiver_depths_m, self.features, self.reference_receiver)

    def scenario(self) -> "Scenario":
        """The training scenario, parsed from the stored text (imports the propagation package).

        Raises:
            DataError: when the stored text no longer parses (e.g. a newer schema).
        """
        from acoustic_inv.errors import ConfigError
        from acoustic_inv.scenario import scenario_from_text

        try:
            return scenario_from_text(self.scenario_text, default_name=self.scenario_name,
                                      source=f"<scenario {self.scenario_name!r} stored in the model>")
        except ConfigError as error:
            raise DataError(str(error)) from None

    def to_record(self) -> dict[str, Any]:
        """Plain values and tensors for the ``"inversion"`` entry of a model file."""
        return {
            "version": METADATA_VERSION,
            "scenario": {"name": self.scenario_name, "sha256": self.scenario_sha256, "text": self.scenario_text},
            "observation": {"features": self.features, "reference_receiver": int(self.reference_receiver),
                            "freqs_hz": list(self.freqs_hz), "receiver_depths_m": list(self.receiver_depths_m)},
            "snr_db_range": None if self.snr_db_range is None else list(self.snr_db_range),
            "typicality": self.typicality.to_record(),
            "params": {"names": list(self.param_names), "units": list(self.param_units),
                       "long_names": list(self.param_long_names)},
            "training_data": json.loads(json.dumps(dict(self.training_data))),
        }

    @classmethod
    def from_record(cls, record: Any, path: str | Path = "<memory>") -> ModelMetadata:
        """Reads the ``"inversion"`` entry of a model file.

        Raises:
            DataError: naming ``path`` when the entry is missing, malformed or of a newer version.
        """
        if record is None:
            raise DataError(
                f"{path}: the model has no inversion metadata (scenario, tones, receivers, training ranges); "
                "it was not trained by `acoustic-inv train` on a dataset directory with its scenario.toml. "
                "Retrain it with `acoustic-inv train --data DATASET_DIR ...`")
        try:
            version = int(record.get("version", 0))
            if version != METADATA_VERSION:
                raise DataError(f"{path}: inversion metadata version {version} is not {METADATA_VERSION}; "
                                "retrain the model with this acoustic-inv")
            scenario, obs = record["scenario"], record["observation"]
            snr = record.get("snr_db_range")
            return cls(
                scenario_name=str(scenario["name"]), scenario_sha256=str(scenario["sha256"]),
                scenario_text=str(scenario["text"]), features=str(obs["features"]),
                reference_receiver=int(obs["reference_receiver"]), freqs_hz=tuple(obs["freqs_hz"]),
                receiver_depths_m=tuple(obs["receiver_depths_m"]),
                snr_db_range=None if snr is None else (float(snr[0]), float(snr[1])),
                typicality=Typicality.from_record(record["typicality"]),
                param_names=tuple(record["params"]["names"]), param_units=tuple(record["params"]["units"]),
                param_long_names=tuple(record["params"]["long_names"]),
                training_data=dict(record.get("training_data", {})))
        except DataError as error:
            message = str(error)
            raise DataError(message if message.startswith(str(path)) else f"{path}: {message}") from None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            raise DataError(f"{path}: malformed inversion metadata ({type(error).__name__}: {error})") from None


def _snr_range(scenario: "Scenario") -> tuple[float, float] | None:
    snr = scenario.noise.snr_db
    if scenario.noise.model == "none" or snr is None:
        return None
    return float(snr.low), float(snr.high)


def metadata_for_dataset(data_dir: str | Path, source: "DataSource", *, val_fraction: float, seed: int,
                         param_names: Sequence[str], param_units: Sequence[str]) -> ModelMetadata | None:
    """The inversion metadata of a model trained on the dataset directory ``data_dir``.

    Reads ``data_dir/scenario.toml`` and ``data_dir/meta.json`` (written by ``acoustic-inv simulate``)
    and fits the typicality statistics on the same train/validation split the trainer used.

    Args:
        data_dir: The dataset directory.
        source: The training source over that directory.
        val_fraction: The trainer's validation fraction.
        seed: The trainer's seed (fixes the split).
        param_names: The model's parameter names (checked against the scenario's prior).
        param_units: Their units.

    Returns:
        The metadata, or None when the directory has no ``scenario.toml`` (not made by ``simulate``).

    Raises:
        DataError: when the scenario does not match the data (parameters, feature count).
    """
    from acoustic_inv.errors import ConfigError
    from acoustic_inv.scenario import scenario_from_text

    data_dir = Path(data_dir)
    scenario_path = data_dir / "scenario.toml"
    if not scenario_path.is_file():
        return None
    try:
        meta = json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))
        text = scenario_path.read_text(encoding="utf-8")
    except (OSError, ValueError) as error:
        raise DataError(f"{data_dir}: cannot read the dataset's meta.json or scenario.toml: {error}") from None
    try:
        scenario = scenario_from_text(text, source=str(scenario_path),
                                      default_name=str(meta.get("scenario", "scenario")))
    except ConfigError as error:
        raise DataError(str(error)) from None
    if tuple(scenario.param_names) != tuple(param_names) or tuple(scenario.prior.units) != tuple(param_units):
        raise DataError(f"{scenario_path}: the scenario's parameters {list(scenario.param_names)} "
                        f"({list(scenario.prior.units)}) are not the model's {list(param_names)} ({list(param_units)})")
    observation = ObservationModel.from_scenario(scenario)
    if observation.n_features != source.n_features:
        raise DataError(f"{scenario_path}: the scenario gives {observation.n_features} features, the data "
                        f"{source.n_features}")
    typicality = fit_typicality(
        (x for _, x in source.blocks("train", val_fraction=val_fraction, seed=seed)),
        (x for _, x in source.blocks("val", val_fraction=val_fraction, seed=seed)))
    facts = {key: meta[key] for key in ("seed", "n_samples", "n_ok", "engine", "engine_version", "created",
                                        "split") if key in meta}
    facts["path"] = str(data_dir)
    return ModelMetadata(
        scenario_name=scenario.name, scenario_sha256=scenario.sha256, scenario_text=text,
        features=observation.features, reference_receiver=observation.reference_receiver,
        freqs_hz=observation.freqs_hz, receiver_depths_m=observation.receiver_depths_m,
        snr_db_range=_snr_range(scenario), typicality=typicality, param_names=tuple(param_names),
        param_units=tuple(param_units), param_long_names=tuple(p.long_name for p in scenario.prior.params),
        training_data=facts)

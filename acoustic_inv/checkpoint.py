"""Model and training-state files.

Both are ``torch.save`` dicts of plain values and tensors, read back with
``torch.load(weights_only=True)`` (no pickled code runs on load):

- a **model file** (``kind = "model"``): the network's and transforms' ``state_dict``, the
  :class:`~acoustic_inv.train_config.TrainConfig` as a dict, the parameter names, units and bounds,
  the feature count, the INN's number of parameter-side noise entries (``n_noise``), the training
  history and the versions (torch, acoustic-inv, format); optionally
  the inversion metadata (``"inversion"``: the scenario, tones, receivers, SNR range and typicality
  statistics that :mod:`acoustic_inv.posterior` needs; see :mod:`acoustic_inv.model_metadata`), and a
  SHA-256 ``content_sha256`` of the weights, config, parameters, feature count and inversion
  metadata, checked on load so that a file whose bytes changed is refused;
- an **ensemble model file** (``kind = "model"`` with ``"members"``): the records of K model files
  trained alike with different seeds (each without its own inversion metadata), the shared
  parameters, feature count and inversion metadata, and one ``content_sha256`` over all of it; it
  loads as an :class:`~acoustic_inv.models.EnsembleModel` (see :func:`save_ensemble`);
- a **training state** (``kind = "training_state"``): all of the above plus optimizer, scheduler,
  critic and RNG states and the early-stopping bookkeeping, so a run continues where it stopped.

Files are written atomically (temporary file in the same directory, then ``os.replace``). A file
that is missing, not a torch file, from another program, of another kind or of an unknown format
version gives a :class:`~acoustic_inv.errors.DataError` that names the file and what is wrong, and so
does a file whose content no longer matches its ``content_sha256`` (files without one, written before
it was introduced, load unchecked).
"""

from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

import acoustic_inv
from acoustic_inv.errors import DataError
from acoustic_inv.fileio import atomic_path
from acoustic_inv.models import CINN, INN, EnsembleModel, PosteriorModel
from acoustic_inv.sources import ParamInfo
from acoustic_inv.train_config import TrainConfig
from acoustic_inv.transforms import ThetaTransform, XTransform

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "build_network",
    "build_posterior_model",
    "content_hash",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "save_ensemble",
    "save_model",
    "verify_content_hash",
]

FORMAT = "acoustic-inv"
FORMAT_VERSION = 1
KINDS = ("model", "training_state")


def build_network(config: TrainConfig, n_params: int, n_features: int, n_noise: int | None = None) -> INN | CINN:
    """The untrained network that ``config`` describes, in float32 on the CPU.

    ``n_noise``: the INN's noise entries on the parameter side (``None``: the INN's default; see
    :class:`~acoustic_inv.models.INN`); ignored for the cINN.
    """
    common = dict(
        n_blocks=config.n_blocks,
        hidden=config.hidden_width,
        depth=config.subnet_depth,
        clamp=config.clamp,
        actnorm=config.actnorm,
        seed=config.seed,
    )
    if config.architecture == "inn":
        return INN(
            n_params, n_features, latent_dim=config.latent_dim, noise_mode=config.noise_mode,  # type: ignore[arg-type]
            pad_std=config.pad_std, n_noise=n_noise, **common,
        )
    return CINN(n_params, n_features, embed_dim=config.embed_dim, **common)


def build_posterior_model(
    config: TrainConfig, params: tuple[ParamInfo, ...], n_features: int, n_noise: int | None = None
) -> PosteriorModel:
    """Network plus (unfitted) transforms for the given parameters and feature count (and, for the
    INN, noise entries ``n_noise``; see :func:`build_network`)."""
    network = build_network(config, len(params), n_features, n_noise)
    return PosteriorModel(
        network,
        ThetaTransform([p.low for p in params], [p.high for p in params]),
        XTransform(n_features),
        [p.name for p in params],
        [p.units for p in params],
    )


def versions() -> dict[str, Any]:
    """Versions recorded in every file."""
    return {"torch": str(torch.__version__), "acoustic_inv": str(acoustic_inv.__version__), "format": FORMAT_VERSION}


def _params_record(params: tuple[ParamInfo, ...]) -> list[dict[str, Any]]:
    return [{"name": p.name, "units": p.units, "low": p.low, "high": p.high} for p in params]


# Keys of a record that its content hash covers (the history and versions are informative only).
_HASHED_KEYS = ("config", "params", "n_features", "n_noise", "state_dict", "members", "inversion")


def _feed(digest: Any, value: Any) -> None:
    """Feeds one value into ``digest`` in a canonical, type-tagged byte form."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{tensor.dtype}{tuple(value.shape)}:".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, Mapping):
        digest.update(f"D{len(value)}:".encode())
        for key in sorted(value, key=str):
            _feed(digest, str(key))
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}:".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, str):
        data = value.encode("utf-8")
        digest.update(f"S{len(data)}:".encode() + data)
    else:  # None, bool, int, float: repr is exact (floats round-trip)
        digest.update(f"V{type(value).__name__}:{value!r};".encode())


def content_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a record's weights, config, parameters, feature count and inversion metadata."""
    digest = hashlib.sha256()
    for key in _HASHED_KEYS:
        if key in record:
            _feed(digest, key)
            _feed(digest, record[key])
    return digest.hexdigest()


def verify_content_hash(record: Mapping[str, Any], path: str | Path = "<memory>") -> None:
    """Checks a record against its ``content_sha256`` (records without one pass unchecked).

    Raises:
        DataError: naming ``path`` when the content does not match its hash.
    """
    stored = record.get("content_sha256")
    if stored is None:
        return
    if not isinstance(stored, str) or content_hash(record) != stored:
        raise DataError(
            f"{path}: content check failed: the weights, config or metadata do not match the file's "
            "SHA-256 (the file was changed or damaged after it was written); retrain or restore the model"
        )


def model_record(
    model: PosteriorModel,
    config: TrainConfig,
    history: list[dict[str, Any]] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The contents of a model file (also embedded in a training state).

    Args:
        model: the trained model.
        config: its training config.
        history: the per-epoch training log.
        metadata: inversion metadata (plain values and tensors only; see
            :class:`acoustic_inv.model_metadata.ModelMetadata`), stored under ``"inversion"``.
    """
    params = tuple(
        ParamInfo(name, units, float(lo), float(hi))
        for name, units, lo, hi in zip(
            model.param_names, model.param_units, model.theta_transform.low.tolist(), model.theta_transform.high.tolist()
        )
    )
    record = {
        "format": FORMAT,
        "kind": "model",
        "versions": versions(),
        "config": config.to_dict(),
        "params": _params_record(params),
        "n_features": model.network.n_features,
        # The INN's parameter-side split (absent in files written before it could differ from m).
        "n_noise": model.network.n_noise if isinstance(model.network, INN) else 0,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": list(history or []),
    }
    if metadata is not None:
        record["inversion"] = dict(metadata)
    record["content_sha256"] = content_hash(record)
    return record


def _atomic_save(obj: Mapping[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(dict(obj), handle)


def save_model(
    path: str | Path,
    model: PosteriorModel,
    config: TrainConfig,
    history: list[dict[str, Any]] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Writes a model file atomically (with its content hash); returns its path.

    Args:
        path: the file to write.
        model: the trained model.
        config: its training config.
        history: the per-epoch training log.
        metadata: inversion metadata stored under ``"inversion"`` (see :func:`model_record`).
    """
    path = Path(path)
    _atomic_save(model_record(model, config, history, metadata), path)
    return path


def save_ensemble(path: str | Path, members: list[str | Path]) -> Path:
    """Pools trained model files into one ensemble model file, written atomically.

    The members must be cINN or INN model files of the same scenario (same parameters, feature
    count and inversion metadata apart from the typicality statistics and the training-data facts).
    The typicality statistics are taken from the first member: they describe the training features,
    which the members share when trained on the same data. Each member keeps its own training-data
    facts and history. Their training configs may differ (seed, size).

    Args:
        path: the ensemble file to write.
        members: two or more model files (a member that is itself an ensemble is refused).

    Returns:
        The path written.

    Raises:
        DataError: naming the file, for an unreadable or changed member, a training state, a nested
            ensemble or members that do not fit together.
    """
    if len(members) < 2:
        raise DataError(f"an ensemble needs at least two model files, got {len(members)}")
    records = []
    for member in members:
        record = load_checkpoint(member)
        if record["kind"] != "model":
            raise DataError(f"{member}: a training state, not a model file; finish training first")
        if "members" in record:
            raise DataError(f"{member}: is itself an ensemble; pass its member files instead")
        model_from_record(record, member)  # config and weights fit together
        verify_content_hash(record, member)
        records.append((Path(member), record))
    first_path, first = records[0]
    # The typicality statistics and the training-data facts (paths, dates) may differ between members.
    own = ("typicality", "training_data")
    shared = {key: value for key, value in (first.get("inversion") or {}).items() if key not in own}
    for member_path, record in records[1:]:
        if record["params"] != first["params"] or record["n_features"] != first["n_features"]:
            raise DataError(
                f"{member_path}: parameters {[p['name'] for p in record['params']]} and {record['n_features']} "
                f"features do not match {first_path} ({[p['name'] for p in first['params']]}, {first['n_features']})"
            )
        other = {key: value for key, value in (record.get("inversion") or {}).items() if key not in own}
        if content_hash({"inversion": other}) != content_hash({"inversion": shared}):
            differing = sorted(k for k in set(other) | set(shared) if content_hash({"inversion": other.get(k)})
                               != content_hash({"inversion": shared.get(k)}))
            raise DataError(f"{member_path}: its inversion metadata differs from {first_path} in {differing}; "
                            "members must be trained for the same scenario")
    ensemble: dict[str, Any] = {
        "format": FORMAT,
        "kind": "model",
        "versions": versions(),
        "params": first["params"],
        "n_features": first["n_features"],
        "members": [
            {**{key: record[key] for key in ("config", "params", "n_features", "n_noise", "state_dict", "history")
                if key in record},
             "training_data": dict((record.get("inversion") or {}).get("training_data") or {})}
            for _, record in records
        ],
        "member_files": [str(p) for p, _ in records],
    }
    if first.get("inversion") is not None:
        ensemble["inversion"] = first["inversion"]
    ensemble["content_sha256"] = content_hash(ensemble)
    path = Path(path)
    _atomic_save(ensemble, path)
    return path


def save_checkpoint(path: str | Path, record: Mapping[str, Any]) -> Path:
    """Writes a training state atomically (``record`` from the trainer; ``kind`` is set here)."""
    path = Path(path)
    _atomic_save({**record, "format": FORMAT, "kind": "training_state", "versions": versions()}, path)
    return path


def load_checkpoint(path: str | Path, *, kind: str = "model") -> dict[str, Any]:
    """Reads and checks a model file or training state; returns its dict.

    Args:
        path: the file.
        kind: ``"model"`` or ``"training_state"`` (a training state also serves as a model file).

    Raises:
        DataError: naming the file, when it is missing, unreadable, foreign, of the wrong kind or of
            an unsupported format version.
    """
    path = Path(path)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise DataError(f"{path}: not a readable acoustic-inv file (not a torch archive)")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        what = f"it holds a {found.group(1)} object" if found else str(error).strip().splitlines()[0]
        raise DataError(
            f"{path}: not an acoustic-inv file: a safe (weights_only) load refused it ({what})"
        ) from None
    except Exception as error:  # torch.load fails in many ways on a file that is not its own
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{path}: not a readable acoustic-inv file ({first_line})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise DataError(f"{path}: not an acoustic-inv file (no '{FORMAT}' format marker); was it written by another program?")
    found_version = record.get("versions", {}).get("format") if isinstance(record.get("versions"), dict) else None
    if found_version != FORMAT_VERSION:
        made_by = record.get("versions", {}).get("acoustic_inv", "an unknown version") if isinstance(record.get("versions"), dict) else "an unknown version"
        relation = "older" if isinstance(found_version, int) and found_version < FORMAT_VERSION else "newer or unknown"
        raise DataError(
            f"{path}: format version {found_version!r} ({relation}; written by acoustic-inv {made_by}) is not "
            f"supported by this acoustic-inv {acoustic_inv.__version__} (format version {FORMAT_VERSION}); "
            "retrain the model or use the matching acoustic-inv version"
        )
    found_kind = record.get("kind")
    if found_kind not in KINDS or (kind == "training_state" and found_kind != "training_state"):
        raise DataError(f"{path}: expected a {kind.replace('_', ' ')} file, found kind {found_kind!r}")
    if "members" in record:
        members = record["members"]
        if found_kind != "model" or not isinstance(members, list) or not members:
            raise DataError(f"{path}: 'members' must be a non-empty list in a model file")
        for k, member in enumerate(members):
            missing = [key for key in ("config", "params", "n_features", "state_dict")
                       if not isinstance(member, dict) or key not in member]
            if missing:
                raise DataError(f"{path}: incomplete ensemble member {k}, missing {missing}")
        return record
    missing = [k for k in ("config", "params", "n_features", "state_dict") if k not in record]
    if missing:
        raise DataError(f"{path}: incomplete file, missing {missing}")
    return record


def model_from_record(
    record: Mapping[str, Any], path: str | Path = "<memory>"
) -> tuple[PosteriorModel | EnsembleModel, TrainConfig]:
    """Rebuilds the trained model (or ensemble) from a checked record.

    For an ensemble the config returned is the first member's.

    Raises:
        DataError: naming ``path`` when the stored config or weights do not fit together.
    """
    if "members" in record:
        built = [model_from_record(member, f"{path} (member {k})") for k, member in enumerate(record["members"])]
        try:
            ensemble = EnsembleModel([model for model, _ in built])
        except ValueError as error:
            raise DataError(f"{path}: ensemble members do not fit together: {error}") from None
        ensemble.eval()
        return ensemble, built[0][1]
    try:
        config = TrainConfig.from_dict(record["config"], source=f"{path} (stored config)")
        params = tuple(ParamInfo(p["name"], p["units"], float(p["low"]), float(p["high"])) for p in record["params"])
        n_noise = record.get("n_noise")  # absent in files written before the INN could carry simulator noise
        n_noise = None if n_noise is None else int(n_noise)
        model = build_posterior_model(config, params, int(record["n_features"]), n_noise)
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(f"{path}: stored config or parameters are invalid: {error}") from None
    try:
        model.load_state_dict(record["state_dict"])
    except RuntimeError as error:
        raise DataError(f"{path}: weights do not match the stored config: {str(error).splitlines()[0]}") from None
    model.eval()
    return model, config


def load_model(path: str | Path, *, device: str | torch.device = "cpu") -> PosteriorModel | EnsembleModel:
    """Loads a trained model (from a model file or a training state) for sampling.

    Args:
        path: the file.
        device: where to put the network.

    Returns:
        The :class:`~acoustic_inv.models.PosteriorModel` (an
        :class:`~acoustic_inv.models.EnsembleModel` for an ensemble file), in eval mode; its ``config`` attribute
        holds the :class:`~acoustic_inv.train_config.TrainConfig`, ``history`` the training log and
        ``metadata`` the inversion metadata dict (``None`` when the file has none) and
        ``content_sha256`` the file's content hash (``None`` when it has none).

    Raises:
        DataError: see :func:`load_checkpoint`; also when the content does not match its hash
            (checked after the config and weights, whose own errors say more).
    """
    stored = load_checkpoint(path)
    record = stored
    if record["kind"] == "training_state":
        record = {**record, "state_dict": record.get("best_state_dict") or record["state_dict"]}
    model, config = model_from_record(record, path)
    verify_content_hash(stored, path)
    model.config = config  # type: ignore[attr-defined]
    # An ensemble's history is its first member's (each member keeps its own in the file).
    history = record["members"][0].get("history", []) if "members" in record else record.get("history", [])
    model.history = list(history)  # type: ignore[attr-defined]
    model.metadata = record.get("inversion")  # type: ignore[attr-defined]
    model.content_sha256 = stored.get("content_sha256")  # type: ignore[attr-defined]
    return model.to(device)

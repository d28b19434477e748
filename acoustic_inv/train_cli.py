"""``acoustic-inv train``: train an INN or cINN on a chunked dataset directory.

    acoustic-inv train --data DATASET_DIR --config train.toml --out model.pt

The config (TOML or JSON) holds the fields of ``acoustic_inv.train_config.TrainConfig``; omitted
fields take their defaults, unknown ones are errors. After every epoch the training state is saved
to ``<out>.resume``; running the same command again continues from there (optimizer, schedule and
random state included). ``--restart`` ignores it and starts afresh. The model file ``out`` (best
validation weights, fitted transforms, config and versions) is written when training ends.

When the dataset directory was made by ``acoustic-inv simulate`` (it holds ``scenario.toml``), the
model file also gets the inversion metadata that ``acoustic-inv invert`` needs: the scenario, the
tones and receivers, the training SNR range and the typicality of the training features (see
``acoustic_inv.model_metadata``).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from acoustic_inv.checkpoint import save_model
    from acoustic_inv.model_metadata import metadata_for_dataset
    from acoustic_inv.sources import ChunkedSource
    from acoustic_inv.train_config import load_train_config
    from acoustic_inv.training import fit, resume_path

    config = load_train_config(args.config)
    if args.device is not None:
        config = replace(config, device=args.device)
    if args.seed is not None:
        config = replace(config, seed=args.seed)
    # A padded INN in theta_pad mode carries each sample's simulator noise on its parameter side.
    carries_noise = config.architecture == "inn" and config.noise_mode == "theta_pad"
    source = ChunkedSource(args.data, buffer_chunks=config.shuffle_buffer_chunks,
                           allow_incomplete=args.allow_incomplete, renoise=config.renoise, with_noise=carries_noise)
    if args.allow_incomplete:
        print(f"train: using the {len(source.chunk_paths)} chunks of {args.data} finished so far")
    state = resume_path(args.out)
    if state.exists() and not args.restart:
        print(f"train: continuing from {state}")
    result = fit(source, config, out=args.out, resume=not args.restart, progress=not args.quiet)
    metadata = metadata_for_dataset(args.data, source, val_fraction=config.val_fraction, seed=config.seed,
                                    param_names=result.model.param_names, param_units=result.model.param_units)
    if metadata is not None:
        save_model(args.out, result.model, result.config, result.history, metadata=metadata.to_record())
    else:
        print(f"train: note: {args.data} has no scenario.toml (not made by `acoustic-inv simulate`), so the "
              "model carries no inversion metadata and `acoustic-inv invert` will refuse it")
    best = next((h for h in result.history if h["epoch"] == result.best_epoch), None)
    score = "n/a" if best is None or best["val_score"] is None else f"{best['val_score']:.5g}"
    how = "stopped early" if result.stopped_early else "finished"
    print(
        f"train: {how} after {len(result.history)} epochs; best epoch {result.best_epoch} "
        f"(validation score {score}); model written to {result.model_path}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train an invertible network (INN or cINN) on a chunked dataset",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, metavar="DIR", help="chunked dataset directory")
    parser.add_argument("--config", required=True, type=Path, metavar="FILE", help="training config (.toml or .json)")
    parser.add_argument("--out", required=True, type=Path, metavar="MODEL", help="model file to write (e.g. model.pt)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None,
                        help="override the config's device")
    from acoustic_inv.cli import seed as seed_type

    parser.add_argument("--seed", type=seed_type, default=None, metavar="N",
                        help="override the config's seed (e.g. for the members of an ensemble)")
    parser.add_argument("--restart", action="store_true", help="ignore <out>.resume and train from scratch")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    parser.add_argument("--allow-incomplete", action="store_true",
                        help="train on the chunks finished so far of a dataset still being generated")
    parser.set_defaults(func=run)

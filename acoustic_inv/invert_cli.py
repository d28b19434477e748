"""``acoustic-inv invert``: posterior of the environment and source from a recording.

    acoustic-inv invert [--model MODEL.pt] RECORDING [--start S --duration D] [--samples N]
                        [--out post.nc] [--seed SEED] [--check K]

Reads the window of the recording (WAV + sidecar, netCDF or SIO; see docs/recordings.md), measures the
model's tones on it (``acoustic_inv.tonals.extract_tonals``), draws N posterior samples and prints a
table of each parameter's mean, median and 90% and 95% equal-tailed credible intervals. The draws,
the summary and the observation go to ``post.nc`` (netCDF-4 in the ArviZ InferenceData layout) and
the summary and provenance to ``post.json``. ``--check K`` re-simulates K draws with the scenario's
propagation engine and prints the Bartlett power of each replica against the observed tones (a
posterior predictive check: near 1 when the posterior explains the data).

Warnings (printed on stderr and written to both files) flag an observation unlike the training
data or a tone whose SNR is below the training range. A recording that does not fit the model
(channel count, depths, tones, sample rate), a bad file or a bad model stops with one line, exit 2.

Without ``--model`` the shipped SWellEx-96 model (``data/models/swellex96.pt``) is used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from acoustic_inv.cli import number, positive_int, seed


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``invert`` command."""
    parser = subparsers.add_parser(
        "invert", help="posterior of the environment and source from a recording",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recording", metavar="RECORDING", help="recording file (.wav with .json sidecar, .nc, .sio)")
    parser.add_argument("--model", "-m", default=None, metavar="MODEL",
                        help="model file from `acoustic-inv train` (default: data/models/swellex96.pt)")
    parser.add_argument("--start", type=number, default=None, metavar="S",
                        help="start of the window, s from the start of the file (default: the start)")
    parser.add_argument("--duration", type=number, default=None, metavar="D",
                        help="length of the window, s (default: to the end)")
    parser.add_argument("--samples", "-n", type=positive_int, default=10_000, metavar="N",
                        help="posterior draws (default 10000)")
    parser.add_argument("--out", "-o", type=Path, default=Path("post.nc"), metavar="FILE.nc",
                        help="netCDF file to write (default post.nc); the JSON summary goes beside it (.json)")
    parser.add_argument("--seed", type=seed, default=None,
                        help="seed of the draws (default: random, recorded in the outputs)")
    parser.add_argument("--check", type=positive_int, default=None, metavar="K",
                        help="re-simulate K posterior draws and report the Bartlett power per tone")
    parser.add_argument("--snapshot", type=number, default=None, metavar="SECONDS",
                        help="snapshot (FFT) length of the tonal extraction, s (default 4)")
    parser.add_argument("--sample-rate", type=number, default=None, metavar="HZ",
                        help="sampling rate, when the file and its sidecar lack it (SIO)")
    parser.add_argument("--threads", type=positive_int, default=1, metavar="T",
                        help="torch threads for the draws (default 1: 10,000 draws take a fraction of a second on "
                             "one core, and more threads slow down on a busy machine)")
    parser.add_argument("--channel-order", choices=("shallow_to_deep", "deep_to_shallow"), default=None,
                        help="order of the file's channels (default: the sidecar's, else the format's)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``invert``."""
    from acoustic_inv.errors import ConfigError
    from acoustic_inv.recordings import read_recording
    from acoustic_inv.tonals import TonalConfig, extract_tonals

    out = Path(args.out)
    json_path = out.with_suffix(".json")
    if json_path == out:
        raise ConfigError(f"--out {out}: expected a .nc file name (the JSON summary goes to {json_path})")
    config = TonalConfig() if args.snapshot is None else TonalConfig(snapshot_s=args.snapshot)
    recording = read_recording(args.recording, args.start, args.duration, sample_rate_hz=args.sample_rate,
                               channel_order=args.channel_order)

    from acoustic_inv.posterior import Posterior

    posterior = Posterior.load(args.model)
    import torch

    torch.set_num_threads(args.threads)
    warnings = posterior.check_recording(recording)
    estimate = extract_tonals(recording, posterior.freqs_hz, config=config)
    result = posterior.invert(estimate, n=args.samples, seed=args.seed)
    result.warnings[:0] = warnings

    t0 = estimate.start_time_s
    tones = ", ".join(f"{f:g} Hz ({snr:.1f} dB)" for f, snr in zip(posterior.freqs_hz, estimate.snr_db))
    print(f"model {posterior.path} (scenario {posterior.metadata.scenario_name}); recording {recording.path}, "
          f"{t0:g}-{t0 + estimate.duration_s:g} s, {estimate.n_snapshots} snapshots of {estimate.snapshot_s:g} s")
    print(f"tones (SNR per snapshot): {tones}")
    print(f"{args.samples} posterior draws (seed {result.metadata['seed']}):")
    print(result.table(), flush=True)
    for line in result.warnings:
        print(f"acoustic-inv invert: warning: {line}", file=sys.stderr, flush=True)

    if args.check is not None:
        def progress(done: int, total: int) -> None:
            print(f"\rpredictive check: {done}/{total} simulated", end="" if done < total else "\n",
                  file=sys.stderr, flush=True)

        check = posterior.predictive_check(result, args.check, progress=progress)
        print(check.table())

    result.to_netcdf(out)
    result.to_json(json_path)
    print(f"wrote {out} and {json_path}")
    return 0

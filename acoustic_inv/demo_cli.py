"""``acoustic-inv demo``: the whole chain on the default scenario, at a known truth.

1. synthesizes a 60 s, 21-channel SWellEx-96 recording with KRAKEN at a known truth (by default the
   scenario's nominal values: the published seabed, the deep source at 54 m and 3 km), at 20 dB SNR
   per tone, with unknown source level and phase per tone, written as WAV + JSON sidecar;
2. inverts it with the model (by default the shipped SWellEx-96 model), exactly as
   ``acoustic-inv invert`` does, printing the table and writing netCDF + JSON;
3. draws the corner plot with the truth marked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from acoustic_inv.cli import positive_int, seed


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from acoustic_inv.cli import main
    from acoustic_inv.errors import ConfigError
    from acoustic_inv.posterior import Posterior
    from acoustic_inv.synth import synthesize, write_synthetic

    posterior = Posterior.load(args.model)
    scenario = posterior.metadata.scenario()
    names = list(scenario.prior.names)
    truth = dict(zip(names, scenario.nominal_theta().tolist()))
    for item in args.truth or []:
        name, _, value = item.partition("=")
        if name not in truth:
            raise ConfigError(f"--truth {item}: unknown parameter {name!r}; expected one of {names}")
        try:
            truth[name] = float(value)
        except ValueError:
            raise ConfigError(f"--truth {item}: {value!r} is not a number") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"demo: synthesizing {args.duration:g} s of the {scenario.name} array with {scenario.engine.name} "
          f"at {args.snr:g} dB SNR per tone")
    for name, units in zip(names, scenario.prior.units):
        print(f"  truth {name} = {truth[name]:.6g} {units}")
    synthetic = synthesize(scenario, np.array([truth[n] for n in names]), duration_s=args.duration,
                           sample_rate_hz=args.sample_rate, snr_db=args.snr, seed=args.seed)
    recording = write_synthetic(out / "recording.wav", synthetic)
    print(f"demo: wrote {recording} (+ .json sidecar)")
    model = ["--model", str(args.model)] if args.model else []
    post = out / "posterior.nc"
    code = main(["invert", *model, str(recording), "--samples", str(args.samples), "--seed", str(args.seed),
                 "--out", str(post)])
    if code:
        return code
    truth_args = [f"{n}={truth[n]!r}" for n in names]
    code = main(["plot", "posterior", str(post), "--out", str(out / "marginals.png"), "--truth", *truth_args])
    if code:
        return code
    print(f"demo: done; see {out / 'marginals.png'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="synthesize a recording at a known truth, invert it, plot it",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model file (default: the shipped SWellEx-96 model)")
    parser.add_argument("--out", default="demo-out", help="output folder (default demo-out)")
    parser.add_argument("--truth", nargs="*", metavar="NAME=VALUE",
                        help="true parameters to change from the scenario's nominal values")
    parser.add_argument("--snr", type=float, default=20.0, help="SNR per tone and snapshot, dB (default 20)")
    parser.add_argument("--duration", type=float, default=60.0, help="recording length, s (default 60)")
    parser.add_argument("--sample-rate", type=float, default=1500.0, help="sampling rate, Hz (default 1500)")
    parser.add_argument("--samples", type=positive_int, default=10_000, help="posterior draws (default 10000)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the noise, phases and draws (default 0)")
    parser.set_defaults(func=run)

"""``acoustic-inv field``: the transmission-loss field of an environment, as a picture.

ENV_OR_SCENARIO is a TOML file with an ``[environment]`` table, or the name of a shipped scenario
(``swellex96``). The source depth defaults to half the water depth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from acoustic_inv.errors import ConfigError, UserError
from acoustic_inv.resources import resolve_scenario


def run(args: argparse.Namespace) -> int:
    import propagation
    from propagation.errors import PropagationError
    from propagation.io import load_environment

    from acoustic_inv.plots import plot_tl_field

    path = resolve_scenario(args.env)
    try:
        env = load_environment(path)
    except PropagationError as error:
        raise ConfigError(str(error)) from None
    source_depth = args.source_depth if args.source_depth is not None else 0.5 * env.water_depth_m
    if args.max_depth is not None and args.max_depth > env.water_depth_m:
        raise ConfigError(f"--max-depth {args.max_depth:g} m: expected at most the water depth "
                          f"{env.water_depth_m:g} m of {path}")
    max_depth = args.max_depth if args.max_depth is not None else env.water_depth_m
    depths = np.linspace(0.5, max_depth, args.n_depths)
    ranges = np.linspace(args.max_range_km * 1000.0 / args.n_ranges, args.max_range_km * 1000.0, args.n_ranges)
    try:
        tl = propagation.tl_field(env, source_depth, args.freq, depths, ranges, engine=args.engine)
    except PropagationError as error:
        raise UserError(f"{path}: {error}") from None
    out = Path(args.out)
    plot_tl_field(tl, out, title=f"{env.name}: {args.freq:g} Hz, source {source_depth:g} m, {args.engine}")
    finite = tl.values[np.isfinite(tl.values)]
    print(f"wrote {out}: TL {finite.min():.1f}-{finite.max():.1f} dB over {tl.sizes['depth']} depths x "
          f"{tl.sizes['range']} ranges")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("field", help="plot the transmission-loss field of an environment",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("env", metavar="ENV_OR_SCENARIO", help="TOML file or shipped scenario name")
    parser.add_argument("--engine", default="kraken",
                        help="kraken (default), krakenc, bellhop, bellhop-fortran")
    parser.add_argument("--freq", type=float, default=148.0, help="frequency in Hz (default 148)")
    parser.add_argument("--source-depth", type=float, default=None, help="source depth in m")
    parser.add_argument("--max-range-km", type=float, default=10.0, help="largest range in km (default 10)")
    parser.add_argument("--max-depth", type=float, default=None, help="deepest receiver in m (default: floor)")
    parser.add_argument("--n-ranges", type=int, default=400, help="number of ranges (default 400)")
    parser.add_argument("--n-depths", type=int, default=200, help="number of depths (default 200)")
    parser.add_argument("--out", default="tl.png", help="output image (PNG, PDF or SVG)")
    parser.set_defaults(func=run)

"""Propagation engine back-ends by name: ``kraken``, ``krakenc``, ``bellhop``, ``bellhop-fortran``.

(Named ``backends`` rather than ``engines`` so that the package never shadows the function
:func:`propagation.engines`.)

See :mod:`propagation.backends.base` for the interface and the conventions every engine follows,
:mod:`propagation.backends.kraken` and :mod:`propagation.backends.bellhop` for the engines, and
:mod:`propagation.backends.modecheck` for the lost-mode check.
"""

from propagation.backends.base import (ArrivalSet, Engine, EngineInfo, ModeSet, engine_names, engines,
                                      get_engine, register)
from propagation.backends.bellhop import FortranBellhopEngine, PelagicBellhopEngine, find_bellhop
from propagation.backends.kraken import KrakenEngine

register(KrakenEngine("kraken", "kraken"))
register(KrakenEngine("krakenc", "krakenc"))
register(PelagicBellhopEngine())
register(FortranBellhopEngine())

__all__ = ["ArrivalSet", "Engine", "EngineInfo", "ModeSet", "engine_names", "engines", "find_bellhop",
           "get_engine", "register"]

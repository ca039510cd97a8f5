"""Registry of data-free KD method implementations.

A params file (params/methods/<name>.yaml) names its implementation; several params files may
share one implementation (e.g. `dafl` and `dafl_original`).
"""

from dfkd.methods.adi import ADI
from dfkd.methods.base import DFKDMethod
from dfkd.methods.cmi import CMI
from dfkd.methods.cudfkd import CuDFKD
from dfkd.methods.dafl import DAFL
from dfkd.methods.dfq import DFQ
from dfkd.methods.fast_meta import FastMeta
from dfkd.methods.mad import MAD
from dfkd.methods.nayer import NAYER
from dfkd.registry import Registry

METHODS: Registry[type[DFKDMethod]] = Registry("method implementation")
METHODS.register("adi")(ADI)
METHODS.register("cmi")(CMI)
METHODS.register("cudfkd")(CuDFKD)
METHODS.register("dafl")(DAFL)
METHODS.register("dfq")(DFQ)
METHODS.register("fast_meta")(FastMeta)
METHODS.register("mad")(MAD)
METHODS.register("nayer")(NAYER)

__all__ = ["METHODS", "DFKDMethod"]

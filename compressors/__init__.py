"""Compression methods for kick-checks: one module per method behind one protocol and a registry.

``get_compressor(name)`` returns a callable ``compressor(model, spec, calibration)``; ``canonical_method(name)``
is the one name of the compressor a name or import path denotes; ``walk_blocks`` is the layer-by-layer
calibration helper our methods use, available to plug-ins too.
"""

from compressors.base import (
    Compressor,
    LayerwisePruner,
    available_methods,
    canonical_method,
    get_compressor,
    register,
)
from compressors.layerwise import compressible_layers, decoder_blocks, walk_blocks
from compressors.report import CompressionReport, LayerSparsity, measure_sparsity

__all__ = [
    "CompressionReport",
    "Compressor",
    "LayerSparsity",
    "LayerwisePruner",
    "available_methods",
    "canonical_method",
    "compressible_layers",
    "decoder_blocks",
    "get_compressor",
    "measure_sparsity",
    "register",
    "walk_blocks",
]

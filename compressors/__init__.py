"""Compression methods for kick-checks: one module per method behind one protocol and a registry.

``get_compressor(name)`` returns a callable ``compressor(model, spec, calibration)``; ``walk_blocks`` is the
layer-by-layer calibration helper our methods use, available to plug-ins too.
"""

from compressors.base import Compressor, LayerwisePruner, available_methods, get_compressor, register
from compressors.layerwise import compressible_layers, decoder_blocks, walk_blocks
from compressors.report import CompressionReport, LayerSparsity, measure_sparsity

__all__ = [
    "CompressionReport",
    "Compressor",
    "LayerSparsity",
    "LayerwisePruner",
    "available_methods",
    "compressible_layers",
    "decoder_blocks",
    "get_compressor",
    "measure_sparsity",
    "register",
    "walk_blocks",
]

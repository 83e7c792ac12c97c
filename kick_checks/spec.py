"""The compression spec now lives in :mod:`compressors.spec`, so that ``compressors`` stands alone; this name is
kept for compressor plug-ins written against kick-checks 0.1 (``from kick_checks.spec import CompressionSpec``)."""

from compressors.spec import (  # noqa: F401 - re-exported
    DEFAULT_BITS,
    DEFAULT_GROUP_SIZE,
    QUANTIZATION_METHODS,
    UNSTRUCTURED,
    CompressionSpec,
    Pattern,
    SpecError,
    build_spec,
    parse_pattern,
    parse_sparsity,
)

"""The GPTQ checkpoint layout that GPTQModel (and auto-gptq, vLLM, transformers' GPTQ integration) serve with
low-bit kernels: per quantized linear layer ``qweight``, ``qzeros``, ``scales`` and ``g_idx``.

- ``qweight`` int32 ``[in * bits / 32, out]``: the integer levels of each output column, packed along the input
  dimension as one little-endian bit stream (32 levels fill ``bits`` words; 3-bit levels straddle words).
- ``qzeros`` int32 ``[groups, out * bits / 32]``: the zero points, packed the same way along the output dimension.
  Format ``gptq`` (v1) stores ``zero - 1``, which cannot hold a zero point of 0; format ``gptq_v2`` stores
  the zero point itself. Symmetric grids (zero = 2^(bits-1)) are exact in v1, so they are written as v1, the
  form every server reads; asymmetric grids are written as v2, which GPTQModel reads.
- ``scales`` float16 ``[groups, out]``, ``g_idx`` int32 ``[in]``: the group of each input column (act-order
  permutes it).

A weight is ``scales[g, o] * (level - zero[g, o])`` with ``g = g_idx[i]``, the grid of our quantizers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from compressors.quantization import QuantizedLayer

PACKABLE_BITS = (2, 3, 4, 8)
WORD = 32


@dataclass(frozen=True)
class PackedLayer:
    qweight: torch.Tensor
    qzeros: torch.Tensor
    scales: torch.Tensor
    g_idx: torch.Tensor

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.{name}": getattr(self, name) for name in ("qweight", "qzeros", "scales", "g_idx")}


def checkpoint_format(symmetric: bool) -> str:
    return "gptq" if symmetric else "gptq_v2"


def pack_levels(levels: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack unsigned ``levels`` ``[n, k]`` (n a multiple of 32) along dim 0 into int32 ``[n * bits / 32, k]``."""
    if levels.shape[0] % WORD:
        raise ValueError(f"cannot pack {levels.shape[0]} rows: the packed dimension must be a multiple of 32")
    values = levels.to(torch.int64).reshape(-1, WORD, levels.shape[1])  # [chunks, 32, k]
    words = torch.zeros(values.shape[0], bits, levels.shape[1], dtype=torch.int64)
    for position in range(WORD):
        offset = bits * position
        word, shift = divmod(offset, WORD)
        words[:, word] |= (values[:, position] << shift) & 0xFFFFFFFF
        if shift + bits > WORD:  # the level straddles two words
            words[:, word + 1] |= values[:, position] >> (WORD - shift)
    packed = words.reshape(-1, levels.shape[1])
    return torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)


def unpack_levels(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """The inverse of :func:`pack_levels`: int32 ``[m, k]`` to levels ``[m * 32 / bits, k]`` (int64)."""
    words = packed.to(torch.int64) & 0xFFFFFFFF
    words = words.reshape(-1, bits, packed.shape[1])
    mask = (1 << bits) - 1
    values = torch.zeros(words.shape[0], WORD, packed.shape[1], dtype=torch.int64)
    for position in range(WORD):
        word, shift = divmod(bits * position, WORD)
        value = words[:, word] >> shift
        if shift + bits > WORD:
            value = value | (words[:, word + 1] << (WORD - shift))
        values[:, position] = value & mask
    return values.reshape(-1, packed.shape[1])


def pack_layer(layer: QuantizedLayer, bits: int, symmetric: bool) -> PackedLayer:
    """Pack one layer's integer form; ``symmetric`` picks the zero-point convention (see the module text)."""
    if int(layer.levels.max()) > 2**bits - 1:
        raise ValueError(f"levels above {2**bits - 1} cannot be packed in {bits} bits")
    stored_zero = layer.zero - 1 if checkpoint_format(symmetric) == "gptq" else layer.zero
    if float(stored_zero.min()) < 0:
        raise ValueError("a zero point of 0 cannot be stored in the v1 gptq format")
    return PackedLayer(
        qweight=pack_levels(layer.levels.t().contiguous(), bits),  # [in, out] packed along in
        qzeros=pack_levels(stored_zero.round().long(), bits).t().contiguous(),  # [out, groups] packed along out
        scales=layer.scale.t().contiguous().to(torch.float16),
        g_idx=layer.g_idx.to(torch.int32),
    )


def dequantize(packed: PackedLayer, bits: int, fmt: str) -> torch.Tensor:
    """The float weight ``[out, in]`` a GPTQ kernel computes with (for checks; kernels never materialise it)."""
    levels = unpack_levels(packed.qweight, bits).t()  # [out, in]
    zeros = unpack_levels(packed.qzeros.t().contiguous(), bits)  # [out, groups]
    if fmt == "gptq":
        zeros = zeros + 1
    g_idx = packed.g_idx.long()
    scales = packed.scales.float().t()  # [out, groups]
    return scales[:, g_idx] * (levels - zeros[:, g_idx])

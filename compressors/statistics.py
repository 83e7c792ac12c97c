"""Input statistics that calibrated compressors collect for one linear layer.

Both depend on a layer's inputs alone (``inputs_only = True``), so layers that are called on the very same input
tensor (a block's query, key and value projections; its gate and up projections) can share one: the calibration
walk then computes it once (see :mod:`compressors.layerwise`).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


class _Rows:
    """Flattens ``[..., in_features]`` activations into ``[tokens, in_features]`` float32 rows, always a copy,
    into one buffer reused from batch to batch (a fresh tensor per batch costs more than the copy itself)."""

    def __init__(self) -> None:
        self.buffer: torch.Tensor | None = None

    def __call__(self, inputs: torch.Tensor, device: torch.device) -> torch.Tensor:
        flat = inputs.reshape(-1, inputs.shape[-1])
        if self.buffer is None or self.buffer.shape != flat.shape or self.buffer.device != device:
            self.buffer = torch.empty(flat.shape, dtype=torch.float32, device=device)
        return self.buffer.copy_(flat)


@contextmanager
def _bf16_products_on_cpu(inputs: torch.Tensor):
    """Let oneDNN multiply float32 matrices through bfloat16 when that is exact: the rows came from bfloat16
    activations, so rounding them to bfloat16 changes nothing, and the products accumulate in float32 either
    way. Three times faster on CPUs with bfloat16 units; only the order of the float32 sums differs."""
    setting = getattr(getattr(torch.backends, "mkldnn", None), "matmul", None)
    exact = inputs.dtype == torch.bfloat16 and inputs.device.type == "cpu" and setting is not None
    if not exact:
        yield
        return
    previous = setting.fp32_precision
    setting.fp32_precision = "bf16"
    try:
        yield
    finally:
        setting.fp32_precision = previous


class InputNorms:
    """Squared L2 norm of each input feature over all calibration tokens (Wanda's ``||X_j||``)."""

    inputs_only = True

    def __init__(self, in_features: int, device: torch.device | str = "cpu") -> None:
        self.squared_norms = torch.zeros(in_features, dtype=torch.float64, device=device)
        self.tokens = 0
        self._rows = _Rows()

    def add_batch(self, inputs: torch.Tensor) -> None:
        rows = self._rows(inputs, inputs.device)
        self.squared_norms += rows.mul_(rows).sum(dim=0).to(self.squared_norms.device, torch.float64)
        self.tokens += rows.shape[0]

    def norms(self) -> torch.Tensor:
        return self.squared_norms.sqrt().float()


def _panel_edges(width: int) -> list[int]:
    """Where the row panels of a ``width``-wide Hessian start and end: up to four, none narrower than 192."""
    panels = max(1, min(4, width // 192))
    return [round(index * width / panels) for index in range(panels + 1)]


class Hessian:
    """The layer-wise Hessian ``H = 2 X Xᵀ / tokens`` of the squared reconstruction error (SparseGPT, GPTQ).

    ``X Xᵀ`` is symmetric, so only its upper block triangle is accumulated: the columns are cut into up to four
    panels, and each panel's rows are multiplied with its own and the later columns (with four panels, 10 of 16
    blocks: 62% of the products). :meth:`matrix` mirrors the rest. The sums are the full product's; only their
    float32 order differs.
    """

    inputs_only = True

    def __init__(self, in_features: int, device: torch.device | str = "cpu") -> None:
        self._upper_panels = torch.zeros(in_features, in_features, dtype=torch.float32, device=device)
        self._edges = _panel_edges(in_features)
        self.tokens = 0
        self._rows = _Rows()

    def add_batch(self, inputs: torch.Tensor) -> None:
        rows = self._rows(inputs, self._upper_panels.device)
        with _bf16_products_on_cpu(inputs):
            for start, end in zip(self._edges, self._edges[1:]):
                self._upper_panels[start:end, start:].addmm_(rows[:, start:end].T, rows[:, start:])
        self.tokens += rows.shape[0]

    def matrix(self) -> torch.Tensor:
        """A new tensor on every call, so a caller may change it in place."""
        if self.tokens == 0:
            raise RuntimeError("the Hessian saw no calibration tokens: the layer was never called")
        full = self._upper_panels * (2.0 / self.tokens)
        for start, end in zip(self._edges[1:], self._edges[2:]):
            full[start:end, :start] = full[:start, start:end].T
        return full

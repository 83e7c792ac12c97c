"""Input statistics that calibrated compressors collect for one linear layer."""

from __future__ import annotations

import torch


def _as_rows(inputs: torch.Tensor) -> torch.Tensor:
    """Flatten ``[..., in_features]`` activations into ``[tokens, in_features]`` float32 rows."""
    return inputs.reshape(-1, inputs.shape[-1]).float()


class InputNorms:
    """Squared L2 norm of each input feature over all calibration tokens (Wanda's ``||X_j||``)."""

    def __init__(self, in_features: int, device: torch.device | str = "cpu") -> None:
        self.squared_norms = torch.zeros(in_features, dtype=torch.float64, device=device)
        self.tokens = 0

    def add_batch(self, inputs: torch.Tensor) -> None:
        rows = _as_rows(inputs)
        self.squared_norms += rows.pow(2).sum(dim=0).to(self.squared_norms.device, torch.float64)
        self.tokens += rows.shape[0]

    def norms(self) -> torch.Tensor:
        return self.squared_norms.sqrt().float()


class Hessian:
    """The layer-wise Hessian ``H = 2 X Xᵀ / tokens`` of the squared reconstruction error (SparseGPT, GPTQ)."""

    def __init__(self, in_features: int, device: torch.device | str = "cpu") -> None:
        self.sum_outer = torch.zeros(in_features, in_features, dtype=torch.float32, device=device)
        self.tokens = 0

    def add_batch(self, inputs: torch.Tensor) -> None:
        rows = _as_rows(inputs).to(self.sum_outer.device)
        self.sum_outer.addmm_(rows.T, rows)
        self.tokens += rows.shape[0]

    def matrix(self) -> torch.Tensor:
        if self.tokens == 0:
            raise RuntimeError("the Hessian saw no calibration tokens: the layer was never called")
        return self.sum_outer * (2.0 / self.tokens)

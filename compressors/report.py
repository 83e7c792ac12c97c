"""What compression achieved: zeros per layer and overall, measured on the weights themselves."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import nn

from compressors.layerwise import compressible_layers


@dataclass(frozen=True)
class LayerSparsity:
    name: str
    numel: int
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.numel if self.numel else 0.0


@dataclass
class CompressionReport:
    """Achieved sparsity of every compressible layer; ``seconds`` is the compressor's wall time."""

    layers: list[LayerSparsity] = field(default_factory=list)
    seconds: float = 0.0
    quantization_errors: dict[str, float] = field(default_factory=dict)  # layer -> relative error

    @property
    def numel(self) -> int:
        return sum(layer.numel for layer in self.layers)

    @property
    def zeros(self) -> int:
        return sum(layer.zeros for layer in self.layers)

    @property
    def sparsity(self) -> float:
        return self.zeros / self.numel if self.numel else 0.0

    def to_dict(self) -> dict:
        return {
            "sparsity": self.sparsity,
            "numel": self.numel,
            "zeros": self.zeros,
            "seconds": round(self.seconds, 3),
            "layers": [
                asdict(layer) | {"sparsity": layer.sparsity}
                | ({"quantization_error": self.quantization_errors[layer.name]}
                   if layer.name in self.quantization_errors else {})
                for layer in self.layers
            ],
        }

    def summary(self, timing: str = "in") -> str:
        """One line: achieved sparsity, its extremes, the compression time after ``timing``, quantization error."""
        lowest = min(self.layers, key=lambda layer: layer.sparsity)
        highest = max(self.layers, key=lambda layer: layer.sparsity)
        text = (
            f"achieved sparsity {self.sparsity:.4%} over {len(self.layers)} layers "
            f"(min {lowest.sparsity:.4%} {lowest.name}, max {highest.sparsity:.4%} {highest.name}) "
            f"{timing} {self.seconds:.1f}s"
        )
        if self.quantization_errors:
            worst = max(self.quantization_errors, key=self.quantization_errors.get)
            mean = sum(self.quantization_errors.values()) / len(self.quantization_errors)
            text += (f"; quantization error (relative) mean {mean:.2e}, max {self.quantization_errors[worst]:.2e} "
                     f"{worst}")
        return text


def measure_sparsity(model: nn.Module) -> CompressionReport:
    """Count exact zeros in every linear layer of the decoder blocks."""
    layers = [
        LayerSparsity(name, layer.weight.numel(), int((layer.weight == 0).sum()))
        for name, layer in compressible_layers(model)
    ]
    return CompressionReport(layers=layers)

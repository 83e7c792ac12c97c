"""The measurements a run makes of its model, once, around compression (``--kick-no-measure`` turns them off).

:class:`RunMeasurement` is called by the session: :meth:`~RunMeasurement.before` on the freshly loaded dense
model (the dense reference for divergence and the dense throughput, when the run compresses),
:meth:`~RunMeasurement.after` once the weights are final (storage, divergence, throughput). Each model state
(dense, then compressed) runs the probe once: its one timed prefill also records the block outputs for
divergence, then 8 greedy steps are decoded: about 300 tokens through the model per state. A measurement that fails
is recorded with its error and logged: it never stops the gate, whose verdicts do not depend on it.
"""

from __future__ import annotations

import logging
import time

from compressors.spec import CompressionSpec
from kick_checks.experiments.divergence import DenseReference, capture_reference, measure_divergence
from kick_checks.experiments.efficiency import KERNELS_NOTE, measure_storage, measure_throughput
from kick_checks.experiments.probe import probe_ids

log = logging.getLogger("kick_checks")


class RunMeasurement:
    def __init__(self, spec: CompressionSpec) -> None:
        self.spec = spec
        self.seconds = 0.0
        self.dense_throughput: dict | None = None
        self.reference: DenseReference | None = None
        self.errors: dict[str, str] = {}
        self.efficiency: dict | None = None
        self.divergence: dict | None = None
        self._ids = None

    def _guarded(self, what: str, work):
        started = time.perf_counter()
        try:
            return work()
        except Exception as error:  # a measurement must never take the gate down with it
            log.exception("measuring %s failed", what)
            self.errors[what] = f"{type(error).__name__}: {error}"
            return None
        finally:
            self.seconds += time.perf_counter() - started

    def before(self, model, tokenizer) -> None:
        """On the dense model, before any compression."""
        if self.spec.is_dense:
            return
        self._ids = self._guarded("probe", lambda: probe_ids(tokenizer))
        if self._ids is None:
            return
        self.reference, self.dense_throughput = self._guarded(
            "dense reference", lambda: capture_reference(model, self._ids)) or (None, None)

    def after(self, model, tokenizer) -> None:
        """On the model under test, weights final."""
        if self._ids is None:
            self._ids = self._guarded("probe", lambda: probe_ids(tokenizer))
        storage = self._guarded("storage", lambda: measure_storage(model, self.spec))
        throughput = None
        if self.reference is not None:
            self.divergence, throughput = self._guarded(
                "divergence", lambda: measure_divergence(model, self._ids, self.reference)) or (None, None)
            self.reference = None  # the dense copies are not needed any more
        elif self._ids is not None:
            throughput = self._guarded("throughput", lambda: measure_throughput(model, self._ids))
        if throughput is not None and self.dense_throughput is not None:
            throughput["dense_prefill_tokens_per_s"] = self.dense_throughput["prefill_tokens_per_s"]
            throughput["dense_decode_tokens_per_s"] = self.dense_throughput["decode_tokens_per_s"]
        self.efficiency = {"storage": storage, "throughput": throughput, "kernels": KERNELS_NOTE,
                           "seconds": round(self.seconds, 2), **({"errors": self.errors} if self.errors else {})}

    def summary(self) -> str:
        """One line for the terminal summary."""
        parts = []
        storage = (self.efficiency or {}).get("storage")
        if storage:
            parts.append(f"stored as {storage['stored_as']} {storage['bytes'] / 1e6:.1f} MB "
                         f"({storage['ratio']:.0%} of dense 16-bit {storage['dense_bytes'] / 1e6:.1f} MB)")
        throughput = (self.efficiency or {}).get("throughput")
        if throughput:
            text = (f"prefill {throughput['prefill_tokens_per_s']:.0f} tok/s, decode "
                    f"{throughput['decode_tokens_per_s']:.1f} tok/s on {throughput['device']}")
            if "dense_prefill_tokens_per_s" in throughput:
                text += (f" (dense {throughput['dense_prefill_tokens_per_s']:.0f} / "
                         f"{throughput['dense_decode_tokens_per_s']:.1f}: the same dense kernels)")
            parts.append(text)
        if self.divergence:
            parts.append(f"divergence from dense: KL {self.divergence['kl']['mean']:.3g}, most added at block "
                         f"{self.divergence['flagged_block']}")
        if self.errors:
            parts.append("not measured: " + "; ".join(f"{what} ({error})" for what, error in self.errors.items()))
        return "measured: " + "; ".join(parts) + f" ({self.seconds:.1f}s)"

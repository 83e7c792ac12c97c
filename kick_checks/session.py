"""One kick run, conducted: check the baselines, load the model, compress it once, evaluate tasks, gate.

This is the flow ``spec -> model -> compressor -> evaluation -> comparison``, free of pytest so the plugin and
the ``kick`` CLI share it. Each step is another module's (:mod:`kick_checks.model`, :mod:`compressors`,
:mod:`kick_checks.tasks`, :mod:`kick_checks.gate`); this one decides the order and does everything expensive at
most once per session.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import replace
from pathlib import Path

import kick_checks
from compressors import CompressionReport, get_compressor, measure_sparsity
from compressors.progress import note, stage
from compressors.spec import QUANTIZATION_METHODS, SpecError
from kick_checks.engine.batching import scaled_batch_size
from kick_checks.engine.vllm_backend import session_backend
from kick_checks.errors import KickError, NonFiniteOutput
from kick_checks.experiments.measure import RunMeasurement
from kick_checks.gate.baselines import read_baseline
from kick_checks.gate.comparison import Comparison, compare_items
from kick_checks.gate.noise_floor import NoiseFloor, build_noise_floor, perturbations
from kick_checks.gate.outcome import Outcome
from kick_checks.gate.reference import Reference, ReferenceComparison, read_reference, write_reference
from kick_checks.gate.store import BaselineStore
from kick_checks.judge import Judge, JudgeConfig
from kick_checks.model.calibration import calibration_text, calibration_tokens
from kick_checks.model.compressed_cache import CompressedCache, code_hash, entry_key
from kick_checks.model.environment import environment_differences, environment_label, numerical_environment
from kick_checks.model.loading import (
    LoadedModel,
    ModelRef,
    default_cache_dir,
    load_model,
    model_identity,
    resolve_device,
    resolve_dtype,
    resolve_model,
)
from kick_checks.settings import RunSettings
from kick_checks.tasks import TaskOptions, TaskResult, get_task

log = logging.getLogger("kick_checks")
#: Largest allowed gap between the target and the achieved overall sparsity (weights already zero in the
#: dense model may push it up a little; anything more is a compressor bug).
SPARSITY_SLACK = 1e-3


def shipped_baselines_dir() -> Path:
    """The dense baselines shipped with kick-checks: inside the wheel, or ``baselines/`` of a checkout."""
    package = Path(kick_checks.__file__).parent
    installed = package / "stored_baselines"
    return installed if installed.is_dir() else package.parent / "baselines"


class KickSession:
    def __init__(self, settings: RunSettings, root: Path) -> None:
        self.settings = settings
        self.root = root
        self.ref: ModelRef = resolve_model(settings.model)
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self._loaded: LoadedModel | None = None
        self._dense_copies: dict[str, LoadedModel] = {}  # the dense model in another dtype, for the noise floor
        self.compression: CompressionReport | None = None
        self.compression_source = ""  # "compressed" here, or "loaded" from the compression cache
        self.dense_zeros = 0
        self._results: dict[str, TaskResult] = {}
        self._load_error: KickError | None = None
        self._judge: Judge | None = None
        self.outcomes: list[Outcome] = []
        self.measurement: RunMeasurement | None = None  # efficiency and divergence, unless --kick-no-measure
        self.notes: list[str] = []  # shown in the summary: stale temporary files removed, and the like
        self.steps = [] if settings.spec.is_dense else self._steps()
        self.backend = session_backend(self)  # --kick-backend: transformers, or vLLM serving the compressed model
        self.store = BaselineStore(self.ref.alias, settings.baselines_dir, root, shipped_baselines_dir(),
                                   update=settings.update_baselines, update_missing=settings.update_missing,
                                   sample_update=settings.update_sample)
        #: --kick-reference: the reference run, read at session start so a bad one fails before any model work
        self.reference: Reference | None = read_reference(settings.reference) if settings.reference else None
        self.recovery = None  # --kick-recovery: a kick_checks.recovery.session_hook.SessionRecovery
        if settings.recovery:
            from kick_checks.recovery.session_hook import SessionRecovery

            self.recovery = SessionRecovery(settings)

    def prepare(self, task_keys: list[str]) -> list[str]:
        """Before any model work: check every baseline ``task_keys`` will be gated on (or can be written), so bad
        baselines fail in a second rather than after the evaluation. Returns notes for the user (temporary files
        of interrupted writes that were removed)."""
        expected = {key: get_task(key).expected_fingerprint(self.task_options(get_task(key).data_key()))
                    for key in dict.fromkeys(task_keys)}
        identity = model_identity(self.ref, self.dtype, self.settings.cache_dir)
        if self.recovery is not None:
            self.recovery.check(task_keys)
        if self.reference is not None:
            for key in expected:
                refusal = self.reference.task(key).refusal(identity, {}, {}, before_model=True)
                if refusal:
                    raise KickError(refusal)
        self.notes = self.store.prepare(expected, identity, self.settings.limit)
        return self.notes

    def _steps(self) -> list:
        """``(name, compressor)`` in the order they run: the method, then GPTQ when a pruner's survivors are
        quantized. Each is a fresh instance, so what it records (errors, integer form) belongs to this session."""
        spec = self.settings.spec
        try:
            steps = [(spec.method, get_compressor(spec.method))]
        except SpecError as error:
            raise KickError(str(error)) from None
        if spec.quantizes and spec.method not in QUANTIZATION_METHODS:
            steps.append(("gptq", get_compressor("gptq")))
        return steps

    # -- model -------------------------------------------------------------------------------------------
    @property
    def loaded(self) -> LoadedModel:
        """The model under test, compressed according to the spec (loaded and compressed on first use). A failure
        is remembered, so the other tests of the session report it at once instead of compressing again."""
        if self._load_error is not None:
            raise KickError(str(self._load_error))
        if self._loaded is None:
            try:
                started = time.perf_counter()
                note(f"loading {self.ref.alias} ({self.dtype}, {self.device})")
                loaded = load_model(self.ref, dtype=self.dtype, device=self.device,
                                    cache_dir=self.settings.cache_dir)
                log.info("loaded %s (%s, %s) in %.1fs", self.ref.alias, self.dtype, self.device,
                         time.perf_counter() - started)
                measurement = RunMeasurement(self.settings.spec) if self.settings.measure else None
                if measurement is not None:
                    measurement.before(loaded.model, loaded.tokenizer)
                if self.steps:
                    self.compress(loaded)
                if measurement is not None:
                    measurement.after(loaded.model, loaded.tokenizer)
                    self.measurement = measurement
                    self.notes.append(measurement.summary())
            except KickError as error:
                self._load_error = error
                raise
            self._loaded = loaded
        return self._loaded

    def compress(self, loaded: LoadedModel) -> None:
        """Compress (or load the same compression from the cache), then verify what was achieved: the exact
        sparsity for pruning, at least the target when quantizing (rounding may zero a few more weights)."""
        spec = self.settings.spec
        self.dense_zeros = measure_sparsity(loaded.model).zeros
        steps = self.steps
        text = None
        if any(getattr(step, "needs_calibration", True) for _, step in steps):
            text = calibration_text(self.settings.calib_data)

        def compress() -> CompressionReport:
            note(f"compressing with {spec.label()}")
            return self._run_steps(loaded, steps, text)

        if self.settings.compress_cache:
            key = entry_key(loaded.fingerprint, spec.to_dict(),
                            hashlib.sha256(text.encode()).hexdigest() if text is not None else None,
                            code_hash([step for _, step in steps]))
            cache = CompressedCache(self.settings.cache_dir or default_cache_dir(), self.ref.alias, key)
            report, self.compression_source = cache.compressed_once(loaded.model, compress)
            self.notes += cache.notes
        else:
            report, self.compression_source = compress(), "compressed"
        self.compression = report
        log.info("%s with %s: %s", self.compression_source, spec.label(), self.compression_summary())
        slack = SPARSITY_SLACK + self.dense_zeros / max(report.numel, 1)
        missed = report.sparsity < spec.sparsity - SPARSITY_SLACK if spec.quantizes else (
            abs(report.sparsity - spec.sparsity) > slack)
        if missed:
            raise KickError(
                f"compressor {spec.method!r} reached {report.sparsity:.4%} sparsity, not the requested "
                f"{spec.sparsity:.4%}: the compressor is wrong (see the per-layer report)"
            )
        loaded.fingerprint = {**loaded.fingerprint, "compression": spec.to_dict()}

    def compression_summary(self) -> str:
        """The compression report's line; for weights loaded from the cache, the time is said to be the
        compression's, not the load's."""
        timing = "when it was compressed, in" if self.compression_source == "loaded" else "in"
        return self.compression.summary(timing=timing)

    def _run_steps(self, loaded: LoadedModel, steps: list, text: str | None) -> CompressionReport:
        spec = self.settings.spec
        calibration = None
        if text is not None:
            calibration = calibration_tokens(
                loaded.tokenizer, spec.calib_samples, spec.calib_seqlen, spec.calib_seed, text
            )
        started = time.perf_counter()
        errors: dict[str, float] = {}
        for name, step in steps:
            try:
                step(loaded.model, spec, calibration if getattr(step, "needs_calibration", True) else None)
            except Exception as error:
                log.exception("compressor %s raised", name)
                raise KickError(
                    f"compressor {name!r} failed: {type(error).__name__}: {error} "
                    "(traceback in the captured log); fix the compressor or its options"
                ) from None
            errors.update(getattr(step, "layer_errors", None) or {})
        report = measure_sparsity(loaded.model)
        report.seconds = time.perf_counter() - started
        report.quantization_errors = errors
        return report

    def model_fingerprint(self) -> dict:
        if self._loaded is not None:
            return dict(self._loaded.fingerprint)
        return {"alias": self.ref.alias, "source": self.ref.kind, "dtype": self.dtype}

    @property
    def results(self) -> dict[str, TaskResult]:
        return dict(self._results)

    # -- tasks -------------------------------------------------------------------------------------------
    def result(self, task_key: str) -> TaskResult:
        if task_key not in self._results:
            task = get_task(task_key)
            options = self.task_options(task.data_key())
            loaded = self.loaded
            note(f"evaluating {task_key}")
            with stage(task_key):
                result = self._run(task, task_key, loaded, options)
            log.info("%s: %s %.3f on %d items in %.1fs", task_key, result.metric.name, result.score, result.n,
                     result.seconds)
            self._results[task_key] = result
        return self._results[task_key]

    @staticmethod
    def _run(task, label: str, loaded: LoadedModel, options: TaskOptions) -> TaskResult:
        """Run ``task`` and refuse a result that cannot be judged: non-finite outputs or scores, no item scored, or
        judgments missing (a judge that failed or answered without a rating)."""
        try:
            result = task.run(loaded.model, loaded.tokenizer, options)
        except NonFiniteOutput as error:
            raise KickError(f"{label}: {error}: the model is broken (NaN or infinite weights or activations), so "
                            "no score would mean anything; check what the compressor wrote") from None
        broken = result.non_finite()
        if broken is not None:
            raise KickError(f"{label}: item {broken.id} scored {broken.score} (answer {broken.prediction[:60]!r}): "
                            "a score must be a finite number; the model or the scorer is broken")
        failed, unrated = result.problems.get("judge_failed", 0), result.problems.get("judge_unparsable", 0)
        if failed or unrated:
            what = " and ".join(part for part in (
                f"gave no answer for {failed} items after retries" if failed else "",
                f"answered {unrated} items without a [[rating]]" if unrated else "") if part)
            raise KickError(f"{label}: the judge {what}, so the score would be incomplete: nothing is recorded or "
                            "gated; check the judge endpoint and model and rerun (rated judgments are cached)")
        if not result.items:
            raise KickError(f"{label}: no item was scored, so there is nothing to gate or record: check the "
                            "task's data")
        return result

    def task_options(self, data_name: str) -> TaskOptions:
        return TaskOptions(
            data_path=self.settings.data_paths.get(data_name),
            limit=self.settings.limit,
            judge=self.judge,
            ppl_seqlen=self.settings.ppl_seqlen,
            batch_size=self.settings.batch_size,
            backend=self.backend,
        )

    @property
    def judge(self) -> Judge | None:
        """The LLM judge when ``--kick-judge-model`` is set; its judgments are cached beside the models."""
        judge = self.settings.judge
        if judge.model is None:
            return None
        if self._judge is None:
            cache = (self.settings.cache_dir or default_cache_dir()) / "judge"
            self._judge = Judge(JudgeConfig(judge.model, judge.base_url, timeout_s=judge.timeout_s,
                                            max_attempts=judge.attempts, cache_dir=cache,
                                            concurrency=judge.concurrency, budget_s=judge.budget_s))
        return self._judge

    # -- the gate ------------------------------------------------------------------------------------------
    def check(self, task_key: str) -> Outcome:
        """Compare the task's compressed result with its dense baseline, or record the baseline (with the dense
        model's noise floor). A task checked twice in a session (the suite and a user's own test) gives one
        outcome."""
        for outcome in self.outcomes:
            if outcome.task == task_key:
                return outcome
        result = self.result(task_key)
        fingerprint = self.loaded.fingerprint
        if self.store.records(task_key):
            outcome: Outcome = self.store.record(result, fingerprint, self.environment(),
                                                 self._noise_floor(task_key, result))
        else:
            outcome = self.store.compare(result, fingerprint, self.settings.tolerance_for(task_key),
                                         self.settings.spec.label(), gate=self.settings.gate,
                                         alpha=self.settings.alpha)
            self._note_environment(task_key)
            if self.reference is not None:
                outcome = self._against_reference(task_key, result, outcome)
            if self.recovery is not None:
                outcome = self.recovery.annotate(self, task_key, outcome)
            if self.settings.record_reference is not None:
                write_reference(self.settings.record_reference, result, fingerprint, self.environment(),
                                self.settings.spec.label())
        self.outcomes.append(outcome)
        return outcome

    def _against_reference(self, task_key: str, result: TaskResult, dense: Comparison) -> ReferenceComparison:
        """The verdict against ``--kick-reference``, with the dense comparison beside it."""
        reference = self.reference.task(task_key)
        refusal = reference.refusal(self.loaded.fingerprint, result.fingerprint, self.environment())
        if refusal:
            raise KickError(refusal)
        baseline = read_baseline(self.store.reading_path(task_key), self.store.update_hint)
        against = compare_items(reference.items, result, self.settings.tolerance_for(task_key),
                                self.settings.spec.label(), baseline_path=str(reference.path),
                                gate=self.settings.gate, alpha=self.settings.alpha, noise=baseline.noise,
                                dense_recorded={item.id: item.score for item in baseline.items})
        return ReferenceComparison(task_key, against, dense, reference.label)

    # -- the numerical environment and the noise floor ------------------------------------------------------
    def environment(self) -> dict:
        """Where this run's numbers come from (kernels, dtype, threads, versions): recorded with baselines."""
        model = self._loaded.model if self._loaded is not None else None
        return numerical_environment(self.device, self.dtype, model)

    def _note_environment(self, task_key: str) -> None:
        """Say once, plainly, when a baseline was recorded in another numerical environment than this run's."""
        recorded = self.store.environments([task_key]).get(task_key)
        if not recorded:
            return
        differences = environment_differences(recorded, self.environment())
        if differences:
            line = (f"baselines recorded on {environment_label(recorded)}; this run: "
                    f"{environment_label(self.environment())} ({'; '.join(differences)}): answers near a tie may "
                    "differ by rounding alone, so the gate counts only changes beyond each baseline's noise floor")
            if line not in self.notes:
                self.notes.append(line)

    def _noise_floor(self, task_key: str, recorded: TaskResult) -> NoiseFloor | None:
        """Evaluate the dense model again under each perturbation of ``--kick-noise-floor`` (another batch size,
        thread count, float32) and keep, item by item, what changed (:mod:`kick_checks.gate.noise_floor`)."""
        chosen = perturbations(self.settings.noise_floor, self.dtype)
        if not chosen:
            return None
        task = get_task(task_key)
        options = self.task_options(task.data_key())
        started = time.perf_counter()
        perturbed = {}
        for perturbation in chosen:
            note(f"noise floor of {task_key}: the dense model {perturbation.describe()}")
            loaded = self.loaded if perturbation.dtype is None else self._dense_copy(perturbation.dtype)
            run_options = options if perturbation.batch_factor is None else replace(
                options, batch_size=scaled_batch_size(options.batch_size, perturbation.batch_factor))
            label = f"{task_key} ({perturbation.describe()})"
            with perturbation.applied(), stage(f"{task_key}, noise floor {perturbation.describe()}"):
                perturbed[perturbation] = self._run(task, label, loaded, run_options)
        return build_noise_floor(recorded, perturbed, time.perf_counter() - started)

    def _dense_copy(self, dtype: str) -> LoadedModel:
        if dtype not in self._dense_copies:
            note(f"loading {self.ref.alias} ({dtype}, {self.device}) for the noise floor")
            self._dense_copies[dtype] = load_model(self.ref, dtype=dtype, device=self.device,
                                                   cache_dir=self.settings.cache_dir)
        return self._dense_copies[dtype]

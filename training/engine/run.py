"""``run_training(spec, callbacks) -> TrainingResult``: the engine's single entry point, and ``Run``, one method per
phase.

Phases (each announced by a status event): preparing_data -> loading_model -> evaluating (before) -> training ->
evaluating (after) -> saving -> exporting -> succeeded. Everything a user can fix raises an ``EngineError`` subclass
(after a ``failed`` status event); bad input is rejected before anything is written to ``output_dir``.

Cancellation is cooperative and friendly: when a callback's ``should_stop()`` turns true the run saves a checkpoint
within one optimizer step and *returns* a ``TrainingResult`` with ``status="cancelled"`` (it does not raise), so the
caller can resume it later with the same spec.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import eval_cache, launch
from .callbacks.base import Callback, Emitter
from .errors import ConfigError, DiskFull, EngineError, ExportError
from .preflight import select_unsloth
from .result import TrainingResult, library_versions
from .spec import TrainingSpec
from .tracking import Tracking, check_trackers, forget_tracking

if TYPE_CHECKING:
    from .preflight import Checked
    from .trainers import DataReport, MethodTrainer, RunContext, TrainOutcome

logger = logging.getLogger(__name__)

__all__ = ["EXPORTS_DIR", "FINAL_DIR", "RESULT_FILE", "Run", "TrainingResult", "run_training", "select_unsloth"]

RESULT_FILE = "result.json"
FINAL_DIR = "final"
EXPORTS_DIR = "exports"
COMPARE_MAX_NEW_TOKENS = 64


def run_training(spec: TrainingSpec, callbacks: Sequence[Callback] = ()) -> TrainingResult:
    """Train ``spec`` end to end, reporting to ``callbacks``; returns the result (``cancelled`` included) or raises
    an ``EngineError`` (``ConfigError``, ``DataError``, ``OutOfMemory``, ...)."""
    return Run(spec, callbacks).execute()


class Run:
    """One training run of ``spec``: ``execute()`` runs the phases in order, each a method, and turns failures
    into a ``failed`` status event (out-of-memory errors into an ``OutOfMemory`` with advice)."""

    def __init__(self, spec: TrainingSpec, callbacks: Sequence[Callback] = ()) -> None:
        self.spec = spec
        # Distributed (torchrun): only rank 0 reports, logs to trackers and writes the output folder.
        self.main = launch.is_main_process()
        self.emitter = Emitter(callbacks, job_id=spec.job_id, quiet=not self.main)
        self.started = time.time()
        self.out = Path(spec.output_dir)
        self.checked: Checked | None = None
        self.ctx: RunContext | None = None  # set once the device is known: out-of-memory errors can be explained
        self._method: MethodTrainer | None = None
        self.data: DataReport | None = None
        report_to = spec.hyper.report_to if self.main else ()
        self.tracking = Tracking(report_to, output_dir=spec.output_dir, run_name=spec.job_id)

    # --- the whole run -------------------------------------------------------------------------------------------
    def execute(self) -> TrainingResult:
        """Run every phase; the result, or a ``failed`` status event and the error."""
        try:
            return self._phases()
        except EngineError as exc:
            self.tracking.close("FAILED")
            self.emitter.status("failed", str(exc))
            raise
        except BaseException as exc:
            self.tracking.close("FAILED")
            self._fail(exc)
            raise
        finally:
            if self.ctx is not None and self.ctx.device.type == "cpu":
                import gc

                from .device import release_freed_memory

                self._method = None  # the model, its trainer and optimizer: freed before the memory goes back
                gc.collect()
                release_freed_memory()

    def _phases(self) -> TrainingResult:
        self.prepare()
        if self.emitter.should_stop():
            return self.cancelled()
        self.load()
        resume_from = self.open_output_dir()
        if launch.any_rank(self.emitter.should_stop()):
            return self.cancelled()
        before = self.evaluate("before", f"evaluating the base model on {len(self.method.eval_rows)} rows")
        outcome = self.train(resume_from)
        if outcome.cancelled:
            return self.cancelled(outcome.final_step, outcome.total_steps)
        # load_best_model_at_end: the result is the lowest-eval-loss weights (the last ones only if they are the best).
        best = self.method.keep_best_result(outcome.final_step)
        after = self.evaluate("after", "evaluating the fine-tuned model")
        metrics = {**self.metrics(before, after), **best}
        self.method.gather_full_state()  # sharded runs: a collective before rank 0 saves alone
        if not self.main:  # rank 0 saves, exports and writes the result (the weights are the same on every rank)
            return self.rank_done(outcome, metrics)
        final = self.save(metrics)
        artifacts = self.export(final)
        comparison = self.compare(final)
        if comparison:  # the card gets the evaluation report too
            self._write_card(final, metrics, comparison)
        return self.succeed(outcome, metrics, best, artifacts, comparison)

    def _fail(self, exc: BaseException) -> None:
        """The ``failed`` event for an unexpected exception; an out-of-memory error is re-raised as ``OutOfMemory``."""
        from .trainers.memory_guard import is_oom, oom_error

        if is_oom(exc) and self.ctx is not None:
            estimate = self._method.memory_estimate if self._method is not None else None
            err = oom_error(exc, self.ctx, estimate)
            self.emitter.status("failed", str(err))
            raise err from exc
        if isinstance(exc, KeyboardInterrupt):
            self.emitter.status("failed", "interrupted")
            return
        logger.exception("job %s: training failed", self.spec.job_id)
        self.emitter.status("failed", f"internal error: {type(exc).__name__}: {exc}")

    @property
    def method(self) -> MethodTrainer:
        """The method trainer (available from the data preparation on)."""
        assert self._method is not None
        return self._method

    # --- preparing_data ------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Check the spec, the model and the data (nothing written), set up the device and the tokenizer, and let
        the method trainer convert, split and tokenize the data."""
        from .preflight import preflight
        from .trainers import RunContext
        from .trainers.loading import load_tokenizer

        self.emitter.status("preparing_data", "checking the spec, the model and the data")
        checked = self.checked = preflight(self.spec)
        processes = self.spec.hyper.num_processes
        if launch.is_distributed() and checked.device.type == "cuda":
            import torch

            if torch.cuda.device_count() < launch.local_world_size():
                raise ConfigError(
                    f"num_processes={processes} needs {launch.local_world_size()} GPUs on this host, which has "
                    f"{torch.cuda.device_count()}."
                )
        if processes > 1 and launch.world_size() != processes:
            self.emitter.log(
                "warning",
                f"num_processes={processes} but this run has {launch.world_size()} process(es): start it with "
                "`python -m training.engine.cli` (which runs torchrun) to train on every process",
            )
        check_trackers(self.spec.hyper.report_to)
        device = self._set_up_device(checked)
        self.ctx = RunContext(
            spec=self.spec,
            device=device,
            model_path=checked.model_path,
            emitter=self.emitter,
            use_unsloth=checked.use_unsloth,
            init_path=checked.init_path,
        )
        if processes > 1:
            from .trainers.hf_trainer import run_sharding

            strategy = run_sharding(self.ctx)  # a plain ConfigError before the model loads
            held = {
                "ddp": "a whole copy of the model each (DDP)",
                "fsdp": "the model sharded (FSDP2)",
                "zero3": "the model sharded (ZeRO-3)",
            }[strategy]
            self.emitter.log("info", f"{processes} processes, {held}")
        load_tokenizer(self.ctx)
        self._prepare_data()

    def _set_up_device(self, checked: Checked) -> Any:
        """Import Unsloth before transformers builds the model; pick the CPU thread count by a short probe."""
        device = checked.device
        if checked.use_unsloth:
            import unsloth  # noqa: F401  (must be imported before transformers builds the model: it patches it)

            self.emitter.log("info", "using the Unsloth fast path")
        if device.type == "cpu":
            import torch

            from .device import choose_cpu_threads, keep_freed_memory

            if launch.is_distributed():  # the ranks of this host share its cores (no probe: they would race)
                cores = os.cpu_count() or 1
                threads, timings = max(cores // launch.local_world_size(), 1), {}
            else:
                threads, timings = choose_cpu_threads()
            torch.set_num_threads(threads)
            keep_freed_memory()
            device = dataclasses.replace(device, cpu_threads=threads)
            self.emitter.log(
                "info", f"CPU training with {threads} thread(s) (probe seconds by thread count: {timings})"
            )
        return device

    def _prepare_data(self) -> None:
        from .data import load_examples
        from .trainers import get_trainer

        spec, data = self.spec, self.spec.data
        train = load_examples(
            list(data.train_files), fmt=data.format, column_mapping=data.column_mapping, limit=data.limit
        )
        evaluation = None
        if data.eval_files:
            evaluation = load_examples(
                list(data.eval_files),
                fmt=data.format or train.format.value,
                column_mapping=data.column_mapping,
                limit=spec.hyper.max_eval_samples,
            )
        assert self.ctx is not None
        self._method = get_trainer(spec.method, self.ctx)
        self.data = self._method.prepare_data(train, evaluation)
        self._announce_data(self.data)

    def _announce_data(self, report: DataReport) -> None:
        if report.row_errors:
            self.emitter.log(
                "warning",
                f"{report.row_errors} of {report.rows} rows could not be converted and were skipped"
                + (f" (first: {report.first_row_errors[0]})" if report.first_row_errors else ""),
            )
        if report.truncated:
            self.emitter.log(
                "warning",
                f"{report.truncated} of {report.train_rows} training rows are longer than "
                f"max_length={self.spec.hyper.max_length} and were truncated",
            )
        if report.packed_blocks:
            self.emitter.status(
                "preparing_data",
                f"packed into {report.packed_blocks} training blocks of up to {self.spec.hyper.max_length} tokens "
                f"({report.total_tokens} tokens of the training rows, none truncated) and {report.eval_rows} eval "
                f"blocks ({report.format}); {report.row_errors} skipped",
            )
            return
        self.emitter.status(
            "preparing_data",
            f"{report.train_rows} training rows, {report.eval_rows} eval rows ({report.format}); "
            f"{report.truncated} truncated, {report.row_errors} skipped",
        )

    # --- loading_model -------------------------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model (gradient checkpointing from the memory model) and build the method's Trainer."""
        assert self.checked is not None and self.ctx is not None
        spec, device = self.spec, self.ctx.device
        self.emitter.status(
            "loading_model", f"loading {spec.base_model} ({spec.weights}) on {device.type} ({device.precision})"
        )
        self.method.load(self.checked.config)
        self.method.build(self.tracking.callbacks())

    def open_output_dir(self) -> str | None:
        """Create ``output_dir`` and clear what a fresh run must not reuse; the checkpoint to resume from.

        Nothing was written before this point: bad specs, bad data and models that refuse the LoRA targets leave
        ``output_dir`` untouched."""
        if launch.is_distributed():  # rank 0 clears the folder; every rank resumes from the checkpoint it chose
            resume_from = self._open_output_dir() if self.main else None
            return launch.broadcast_from_main(resume_from)
        return self._open_output_dir()

    def _open_output_dir(self) -> str | None:
        from .checkpoints import clean_incomplete, list_checkpoints

        self.out.mkdir(parents=True, exist_ok=True)
        clean_incomplete(self.out)
        if self.spec.resume:
            return self._checkpoint_to_resume()
        for _step, path in list_checkpoints(self.out, complete_only=False):
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.method.best_dir, ignore_errors=True)
        forget_tracking(self.out)  # a fresh run starts fresh tracker runs
        return None

    def _checkpoint_to_resume(self) -> str | None:
        """The newest complete checkpoint that loads. A damaged newer one (a truncated or missing file) is removed
        with a warning, so the run resumes from the one before it (``save_total_limit`` >= 2 keeps one) and the
        checkpoints it writes next are never shadowed by the damaged one."""
        from .checkpoints import checkpoint_problem, list_checkpoints, remove_checkpoint

        found = list_checkpoints(self.out)
        for i in range(len(found) - 1, -1, -1):
            step, path = found[i]
            problem = checkpoint_problem(path)
            if problem is None:
                return path
            remove_checkpoint(path)
            fallback = (
                f"resuming from the checkpoint before it, step {found[i - 1][0]}"
                if i
                else "no earlier checkpoint is left: training starts from the beginning"
            )
            self.emitter.log("warning", f"the checkpoint of step {step} cannot be loaded ({problem}); {fallback}")
        return None

    # --- evaluating / training -----------------------------------------------------------------------------------
    def evaluate(self, phase: str, message: str) -> dict[str, float] | None:
        """Evaluate on the held-out rows (None without any). The base model's evaluation ("before") is reused from
        the host's cache when nothing it depends on changed (``eval_cache``): resumes, sweeps and clones skip it
        (not in a distributed run, where every rank must join the evaluation)."""
        if not self.method.eval_rows:
            return None
        key = self._before_key() if phase == "before" else None
        cached = eval_cache.load(key) if key else None
        if cached is not None:
            self.emitter.log("info", "base model evaluation reused from the cache (same model, rows and settings)")
            self.method.replay_evaluation(phase, cached)
            return cached
        self.emitter.status("evaluating", message)
        result = self.method.evaluate(phase)
        if key and result:
            eval_cache.store(key, result)
        return result

    def _before_key(self) -> str | None:
        """The cache key of the base model's evaluation, or None when the cache is off or the run continues a
        model (``init_from``: its "before" is not the base model's)."""
        if not eval_cache.enabled() or self.ctx is None or self.spec.init_from or launch.is_distributed():
            return None
        try:
            return eval_cache.cache_key(
                model_path=self.ctx.model_path,
                method=self.spec.method,
                weights=self.spec.weights,
                hyperparameters=self.spec.hyper.to_dict(),
                eval_examples=self.method.eval_examples,
                chat_template=self.ctx.chat_template,
                precision=self.ctx.device.precision,
            )
        except (TypeError, ValueError, OSError) as exc:  # rows that do not serialise: evaluate as before
            logger.warning("job %s: no base evaluation cache key: %s", self.spec.job_id, exc)
            return None

    def train(self, resume_from: str | None) -> TrainOutcome:
        """The training loop (from ``resume_from`` when given)."""
        from .checkpoints import checkpoint_step

        self.emitter.status(
            "training",
            f"resuming from the checkpoint of step {checkpoint_step(resume_from)}" if resume_from else "training",
        )
        return self.method.train(resume_from)

    def metrics(self, before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, Any]:
        """The result's metrics: losses, perplexities, throughput, memory, time."""
        from .callbacks.hf import perplexity
        from .device import peak_memory_mb

        trainer = self.method
        bridge = trainer.bridge
        assert bridge is not None and self.ctx is not None
        losses = [m.loss for m in bridge.metrics if m.loss is not None]
        key, ppl_key = trainer.eval_loss_key, trainer.perplexity_key
        return {
            "train_loss_first": losses[0] if losses else None,
            "train_loss_last": losses[-1] if losses else None,
            "eval_loss_before": before.get(key) if before else None,
            "eval_loss_after": after.get(key) if after else None,
            "perplexity_before": perplexity(before.get(ppl_key)) if before and ppl_key else None,
            "perplexity_after": perplexity(after.get(ppl_key)) if after and ppl_key else None,
            "tokens_per_s_mean": bridge.mean_tokens_per_s,
            # CUDA: max allocated since training began; CPU/MPS: the process's peak RSS (ru_maxrss).
            "peak_memory_mb": max(peak_memory_mb(self.ctx.device.type), bridge.peak_memory_mb) or None,
            "train_runtime_s": round(bridge.train_seconds, 2),
            # Distributed: every rank's tokens, as summed at the metric events (a rank counts only its own).
            "tokens_trained": (
                bridge.tokens_logged if launch.is_distributed() else trainer.counters.tokens if trainer.counters else 0
            ),
            "gradient_checkpointing": trainer.gradient_checkpointing,
            "early_stopped": bridge.early_stopped,
        }

    # --- saving / exporting --------------------------------------------------------------------------------------
    def save(self, metrics: dict[str, Any]) -> Path:
        """Write ``final/`` (model, tokenizer, model card) atomically; its path."""
        from .checkpoints import disk_full_message, is_disk_full

        self.emitter.status("saving", "saving the final model")
        final = self.out / FINAL_DIR
        tmp = self.out / f".{FINAL_DIR}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        try:
            self.method.save_final(str(tmp))
            self._write_card(tmp, metrics)
        except Exception as exc:
            full = is_disk_full(exc, self.out)
            shutil.rmtree(tmp, ignore_errors=True)  # give the partial folder's space back
            if full:
                raise DiskFull(disk_full_message("saving the final model", self.out)) from exc
            raise
        _publish_dir(tmp, final)
        return final

    def _write_card(self, folder: Path, metrics: dict[str, Any], evaluation: dict[str, Any] | None = None) -> None:
        try:
            from .exporters import write_model_card
        except ImportError:
            return
        from .embedded import EMBEDDED_PROVENANCE, EMBEDDED_PUBLIC_ID, is_embedded

        spec = self.spec
        embedded = is_embedded(spec.base_model)
        try:
            write_model_card(
                str(folder),
                base_model=EMBEDDED_PUBLIC_ID if embedded else spec.base_model,
                base_model_note=EMBEDDED_PROVENANCE if embedded else None,
                datasets=list(self.data.files if self.data else ()),
                method=spec.method,
                weights=spec.weights,
                hyperparameters=spec.hyper.to_dict(),
                metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
                evaluation=evaluation,
            )
        except Exception as exc:  # a model card must never cost the trained model
            logger.exception("job %s: model card failed", spec.job_id)
            self.emitter.log("warning", f"model card not written: {exc}")

    def export(self, final: Path) -> list[dict[str, Any]]:
        """The spec's ``export_formats`` from ``final/``; a failed export is recorded, never fatal."""
        spec = self.spec
        if not spec.export_formats:
            return []
        self.emitter.status("exporting", ", ".join(spec.export_formats))
        try:
            from .exporters import export_artifact
        except ImportError as exc:
            self.emitter.log("error", f"exporters are not available: {exc}")
            return [{"kind": name, "error": "exporters not available"} for name in spec.export_formats]
        assert self.checked is not None
        artifacts = []
        for name in spec.export_formats:
            try:
                artifact = export_artifact(
                    name,
                    model_dir=str(final),
                    base_model_path=self.checked.model_path,
                    out_dir=os.path.join(spec.output_dir, EXPORTS_DIR),
                )
                artifacts.append(artifact.to_dict())
                self.emitter.log("info", f"exported {name}: {Path(artifact.path).name}")  # no host path
            except (ExportError, EngineError) as exc:
                artifacts.append({"kind": name, "error": str(exc)})
                self.emitter.log("error", f"export {name} failed: {exc}")
        return artifacts

    def compare(self, final: Path) -> dict[str, Any] | None:
        """``compare_prompts``: base and fine-tuned answers side by side (informative; never fails the run)."""
        spec = self.spec
        if spec.compare_prompts <= 0:
            return None
        examples = self.method.eval_examples
        prompts = _prompts_for_comparison(examples, spec.compare_prompts)
        if not prompts:
            self.emitter.log("warning", "compare_prompts: no held-out prompts to compare on")
            return None
        self.emitter.status("evaluating", f"comparing base and fine-tuned answers on {len(prompts)} prompts")
        assert self.checked is not None
        try:
            from .evaluation import compare_models

            scored = [ex for ex in examples if "messages" in ex][: spec.compare_prompts]
            return compare_models(
                self.checked.model_path,
                str(final),
                prompts,
                max_new_tokens=COMPARE_MAX_NEW_TOKENS,
                eval_examples=scored or None,
                max_length=spec.hyper.max_length,
            )
        except Exception as exc:  # the comparison is informative; never fail a finished run for it
            logger.exception("job %s: comparison failed", spec.job_id)
            self.emitter.log("warning", f"base/fine-tuned comparison failed: {exc}")
            return None

    # --- the result ----------------------------------------------------------------------------------------------
    def succeed(
        self,
        outcome: TrainOutcome,
        metrics: dict[str, Any],
        best: dict[str, Any],
        artifacts: list[dict[str, Any]],
        comparison: dict[str, Any] | None,
    ) -> TrainingResult:
        """The ``succeeded`` result, also written to ``output_dir/result.json``."""
        from .checkpoints import latest_complete_checkpoint

        assert self.ctx is not None and self.checked is not None
        failed = [a for a in artifacts if "error" in a]
        message = f"trained {outcome.final_step} steps" + (f"; {len(failed)} export(s) failed" if failed else "")
        if outcome.early_stopped:
            message += " (early stopping)"
        if best.get("best_model_restored"):
            message += f"; kept the best weights, from step {best['best_step']}"
        data = self.method.report or self.data
        tracking = self.tracking.close("FINISHED")
        result = TrainingResult(
            job_id=self.spec.job_id,
            status="succeeded",
            final_step=outcome.final_step,
            total_steps=outcome.total_steps,
            metrics=metrics,
            model_dir=str(self.out / FINAL_DIR),
            output_dir=self.spec.output_dir,
            artifacts=tuple(artifacts),
            data=data.to_dict() if data is not None else {},
            versions=library_versions(),
            device={**self.ctx.device.to_dict(), "unsloth": self.checked.use_unsloth},
            checkpoint=latest_complete_checkpoint(self.out),
            message=message,
            comparison=comparison,
            duration_s=round(time.time() - self.started, 2),
            tracking=tracking,
        )
        _atomic_write_json(self.out / RESULT_FILE, result.to_dict())
        self.emitter.status("succeeded", message)
        return result

    def rank_done(self, outcome: TrainOutcome, metrics: dict[str, Any]) -> TrainingResult:
        """The result of a rank other than 0 of a distributed run: trained, nothing written (rank 0 reports)."""
        self.tracking.close("FINISHED")
        return TrainingResult(
            job_id=self.spec.job_id,
            status="succeeded",
            final_step=outcome.final_step,
            total_steps=outcome.total_steps,
            metrics=metrics,
            model_dir=None,
            output_dir=self.spec.output_dir,
            versions=library_versions(),
            message=f"rank {launch.rank()}: trained {outcome.final_step} steps",
            duration_s=round(time.time() - self.started, 2),
        )

    def cancelled(self, step: int = 0, total: int = 0) -> TrainingResult:
        """The ``cancelled`` result, naming the checkpoint to resume from."""
        from .checkpoints import checkpoint_step, latest_complete_checkpoint

        spec = self.spec
        checkpoint = latest_complete_checkpoint(spec.output_dir) if os.path.isdir(spec.output_dir) else None
        message = f"cancelled at step {step}" + (
            f"; resume from the checkpoint of step {checkpoint_step(checkpoint)}" if checkpoint else ""
        )
        tracking = self.tracking.close("KILLED")
        self.emitter.status("cancelled", message)
        return TrainingResult(
            job_id=spec.job_id,
            status="cancelled",
            final_step=step,
            total_steps=total,
            metrics={},
            model_dir=None,
            output_dir=spec.output_dir,
            versions=library_versions(),
            checkpoint=checkpoint,
            message=message,
            duration_s=round(time.time() - self.started, 2),
            tracking=tracking,
        )


# --- helpers -------------------------------------------------------------------------------------------------------


def _atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _publish_dir(tmp: Path, final: Path) -> None:
    """Replace ``final`` with ``tmp`` so that a complete folder is always in place."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _prompts_for_comparison(examples: Sequence[dict[str, Any]], n: int) -> list[Any]:
    """Held-out conversations ending with the reference answer (``compare_models`` splits it off); a tool-calling
    row keeps its ``tools``, so both models are asked with the tools offered."""
    prompts: list[Any] = []
    for ex in examples:
        if "messages" in ex and any(m["role"] != "assistant" for m in ex["messages"]):
            messages = list(ex["messages"])
            prompts.append({"messages": messages, "tools": ex["tools"]} if ex.get("tools") else messages)
        elif "prompt" in ex:
            prompts.append([*ex["prompt"], *ex.get("chosen", [])])
        if len(prompts) >= n:
            break
    return prompts

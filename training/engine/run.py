"""``run_training(spec, callbacks) -> TrainingResult``: the engine's single entry point.

Phases (each announced by a status event): preparing_data -> loading_model -> evaluating (before) -> training ->
evaluating (after) -> saving -> exporting -> succeeded. Everything a user can fix raises an ``EngineError`` subclass
(after a ``failed`` status event); bad input is rejected before anything is written to ``output_dir``.

Cancellation is cooperative and friendly: when a callback's ``should_stop()`` turns true the run saves a checkpoint
within one optimizer step and *returns* a ``TrainingResult`` with ``status="cancelled"`` (it does not raise), so the
caller can resume it later with the same spec.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .callbacks.base import Callback, Emitter
from .errors import ConfigError, DataError, EngineError, ExportError
from .spec import TrainingSpec

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"
FINAL_DIR = "final"
EXPORTS_DIR = "exports"
_LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "datasets",
    "safetensors",
    "bitsandbytes",
    "unsloth",
)
# Unsloth's CPU fallback measured slower than the default path on CPU (see STACK-NOTES / the core report), and it
# only supports SFT there; on CUDA it supports these combinations.
_UNSLOTH_SUPPORTED = {
    "cuda": {("sft", "lora"), ("sft", "qlora"), ("sft", "full")},
    "cpu": {("sft", "lora"), ("sft", "full")},
}
_UNSLOTH_AUTO_DEVICES = ("cuda",)


@dataclass(frozen=True)
class TrainingResult:
    """The outcome of ``run_training`` (JSON-safe via ``to_dict``).

    ``status`` is ``succeeded`` or ``cancelled`` (failures raise). ``metrics`` holds train_loss_first/last,
    eval_loss_before/after, perplexity_before/after, tokens_per_s_mean, peak_memory_mb, train_runtime_s, early_stopped,
    and with ``load_best_model_at_end`` best_step, best_eval_loss, best_model_restored (``final/`` then holds the
    lowest-eval-loss weights). ``model_dir`` is ``output_dir/final`` (None when cancelled); ``checkpoint`` the newest
    complete checkpoint.
    """

    job_id: str
    status: str
    final_step: int
    total_steps: int
    metrics: dict[str, Any]
    model_dir: str | None
    output_dir: str
    artifacts: tuple[dict[str, Any], ...] = ()
    data: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    message: str = ""
    comparison: dict[str, Any] | None = None
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        out = {
            "type": "result",
            "job_id": self.job_id,
            "status": self.status,
            "final_step": self.final_step,
            "total_steps": self.total_steps,
            "metrics": dict(self.metrics),
            "model_dir": self.model_dir,
            "output_dir": self.output_dir,
            "artifacts": [dict(a) for a in self.artifacts],
            "data": dict(self.data),
            "versions": dict(self.versions),
            "device": dict(self.device),
            "checkpoint": self.checkpoint,
            "message": self.message,
            "comparison": self.comparison,
            "duration_s": self.duration_s,
        }
        return json.loads(json.dumps(out, default=str))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingResult:
        """Inverse of ``to_dict``."""
        values = {k: v for k, v in data.items() if k != "type"}
        values["artifacts"] = tuple(values.get("artifacts") or ())
        return cls(**values)


def library_versions() -> dict[str, str]:
    """Installed versions of the ML stack (without importing it)."""
    out = {"python": sys.version.split()[0]}
    for name in _LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


# --- preflight -----------------------------------------------------------------------------------------------------


def _model_config(path: str) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot read the model config of {path!r}: {exc}") from exc


def _check_model_fits(spec: TrainingSpec, config: Any) -> None:
    from .trainers.base import model_max_positions

    limit = model_max_positions(config)
    if limit is not None and spec.hyper.max_length > limit:
        raise ConfigError(
            f"max_length={spec.hyper.max_length} is larger than the model's context: {spec.base_model} has "
            f"max_position_embeddings={limit}; use max_length <= {limit}."
        )


def select_unsloth(spec: TrainingSpec, device_type: str) -> bool:
    """Whether this run takes the Unsloth path (``auto``: installed, supported, and faster on this device)."""
    if spec.use_unsloth == "off":
        return False
    installed = importlib.util.find_spec("unsloth") is not None
    supported = (spec.method, spec.weights) in _UNSLOTH_SUPPORTED.get(device_type, set()) and not spec.init_from
    if spec.use_unsloth == "on":
        if not installed:
            raise ConfigError(
                "use_unsloth='on' but unsloth is not installed (pip install --no-deps unsloth unsloth_zoo); "
                "use 'auto' or 'off'."
            )
        if not supported:
            raise ConfigError(
                f"use_unsloth='on' does not support method={spec.method}, weights={spec.weights} on {device_type}"
                f"{' with init_from' if spec.init_from else ''}; use 'auto' or 'off'."
            )
        return True
    return installed and supported and device_type in _UNSLOTH_AUTO_DEVICES


def _preflight(spec: TrainingSpec) -> tuple[str, Any, Any, bool, str | None]:
    """Checks that need no writes: model, context length, QLoRA support, init_from, data files, Unsloth."""
    from .device import detect_device
    from .embedded import resolve_model_path

    device = detect_device(spec.hyper.precision)
    model_path = resolve_model_path(spec.base_model)
    if os.sep in spec.base_model and not os.path.isdir(model_path):
        raise ConfigError(f"base_model {spec.base_model!r} is not a model folder.")
    init_path = None
    if spec.init_from:
        init_path = os.path.abspath(spec.init_from)
        if not os.path.isdir(init_path):
            raise ConfigError(f"init_from {spec.init_from!r} is not a folder (a finished model or adapter).")
    config = _model_config(
        init_path if init_path and os.path.isfile(os.path.join(init_path, "config.json")) else model_path
    )
    _check_model_fits(spec, config)
    if spec.weights == "qlora":
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError("weights='qlora' needs bitsandbytes (pip install bitsandbytes); use 'lora' instead.")
        if device.type == "mps":
            raise ConfigError("weights='qlora' is not supported on Apple MPS; use 'lora'.")
    for path in (*spec.data.train_files, *spec.data.eval_files):
        if not os.path.isfile(path):
            raise DataError(f"Dataset file {path} does not exist.")
    use_unsloth = select_unsloth(spec, device.type)
    return model_path, config, device, use_unsloth, init_path


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


def _prompts_for_comparison(examples: Sequence[dict[str, Any]], n: int) -> list[list[dict[str, str]]]:
    """Held-out conversations ending with the reference answer (``compare_models`` splits it off)."""
    prompts = []
    for ex in examples:
        if "messages" in ex and any(m["role"] != "assistant" for m in ex["messages"]):
            prompts.append(list(ex["messages"]))
        elif "prompt" in ex:
            prompts.append([*ex["prompt"], *ex.get("chosen", [])])
        if len(prompts) >= n:
            break
    return prompts


def _metrics(trainer: Any, before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, Any]:
    from .callbacks.hf import perplexity
    from .device import peak_memory_mb

    bridge = trainer.bridge
    losses = [m.loss for m in bridge.metrics if m.loss is not None]
    key, ppl_key = trainer.eval_loss_key, trainer.perplexity_key
    out: dict[str, Any] = {
        "train_loss_first": losses[0] if losses else None,
        "train_loss_last": losses[-1] if losses else None,
        "eval_loss_before": before.get(key) if before else None,
        "eval_loss_after": after.get(key) if after else None,
        "perplexity_before": perplexity(before.get(ppl_key)) if before and ppl_key else None,
        "perplexity_after": perplexity(after.get(ppl_key)) if after and ppl_key else None,
        "tokens_per_s_mean": bridge.mean_tokens_per_s,
        # CUDA: max allocated since training began; CPU/MPS: the process's peak RSS (ru_maxrss).
        "peak_memory_mb": max(peak_memory_mb(trainer.ctx.device.type), bridge.peak_memory_mb) or None,
        "train_runtime_s": round(bridge._total_train_s, 2),
        "tokens_trained": trainer.counters.tokens if trainer.counters else 0,
        "gradient_checkpointing": trainer.gradient_checkpointing,
        "early_stopped": bridge.early_stopped,
    }
    return out


# --- the entry point -----------------------------------------------------------------------------------------------


def run_training(spec: TrainingSpec, callbacks: Sequence[Callback] = ()) -> TrainingResult:
    """Train ``spec`` end to end, reporting to ``callbacks``; returns the result (``cancelled`` included) or raises
    an ``EngineError`` (``ConfigError``, ``DataError``, ``OutOfMemory``, ...)."""
    from .trainers.base import is_oom, oom_error

    emitter = Emitter(callbacks, job_id=spec.job_id)
    started = time.time()
    ctx_holder: dict[str, Any] = {}
    try:
        return _run(spec, emitter, started, ctx_holder)
    except EngineError as exc:
        emitter.status("failed", str(exc))
        raise
    except BaseException as exc:
        if is_oom(exc) and "ctx" in ctx_holder:
            err = oom_error(exc, ctx_holder["ctx"])
            emitter.status("failed", str(err))
            raise err from exc
        if isinstance(exc, KeyboardInterrupt):
            emitter.status("failed", "interrupted")
            raise
        logger.exception("job %s: training failed", spec.job_id)
        emitter.status("failed", f"internal error: {type(exc).__name__}: {exc}")
        raise


def _cancelled(spec: TrainingSpec, emitter: Emitter, started: float, step: int = 0, total: int = 0) -> TrainingResult:
    from .checkpoints import latest_complete_checkpoint

    checkpoint = latest_complete_checkpoint(spec.output_dir) if os.path.isdir(spec.output_dir) else None
    message = f"cancelled at step {step}" + (f"; resume from {checkpoint}" if checkpoint else "")
    emitter.status("cancelled", message)
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
        duration_s=round(time.time() - started, 2),
    )


def _run(spec: TrainingSpec, emitter: Emitter, started: float, holder: dict[str, Any]) -> TrainingResult:
    from .checkpoints import clean_incomplete, latest_complete_checkpoint, list_checkpoints
    from .trainers.base import RunContext, get_trainer, load_tokenizer

    emitter.status("preparing_data", "checking the spec, the model and the data")
    model_path, config, device, use_unsloth, init_path = _preflight(spec)
    if use_unsloth:
        import unsloth  # noqa: F401  (must be imported before transformers builds the model: it patches it)

        emitter.log("info", "using the Unsloth fast path")
    if device.type == "cpu":
        import torch

        from training.engine.device import choose_cpu_threads

        threads, timings = choose_cpu_threads()
        torch.set_num_threads(threads)
        device = dataclasses.replace(device, cpu_threads=threads)
        emitter.log("info", f"CPU training with {threads} thread(s) (probe seconds by thread count: {timings})")
    ctx = RunContext(
        spec=spec, device=device, model_path=model_path, emitter=emitter, use_unsloth=use_unsloth, init_path=init_path
    )
    holder["ctx"] = ctx
    load_tokenizer(ctx)

    from .data import load_examples

    train = load_examples(
        list(spec.data.train_files),
        fmt=spec.data.format,
        column_mapping=spec.data.column_mapping,
        limit=spec.data.limit,
    )
    evaluation = None
    if spec.data.eval_files:
        evaluation = load_examples(
            list(spec.data.eval_files),
            fmt=spec.data.format or train.format.value,
            column_mapping=spec.data.column_mapping,
            limit=spec.hyper.max_eval_samples,
        )
    method = get_trainer(spec.method, ctx)
    report = method.prepare_data(train, evaluation)
    if report.row_errors:
        emitter.log(
            "warning",
            f"{report.row_errors} of {report.rows} rows could not be converted and were skipped"
            + (f" (first: {report.first_row_errors[0]})" if report.first_row_errors else ""),
        )
    if report.truncated:
        emitter.log(
            "warning",
            f"{report.truncated} of {report.train_rows} training rows are longer than "
            f"max_length={spec.hyper.max_length} and were truncated",
        )
    emitter.status(
        "preparing_data",
        f"{report.train_rows} training rows, {report.eval_rows} eval rows ({report.format}); "
        f"{report.truncated} truncated, {report.row_errors} skipped",
    )
    if emitter.should_stop():
        return _cancelled(spec, emitter, started)

    emitter.status(
        "loading_model", f"loading {spec.base_model} ({spec.weights}) on {device.type} ({device.precision})"
    )
    method.load(config)
    method.build([])

    # Nothing was written before this point: bad specs, bad data and models that refuse the LoRA targets leave
    # output_dir untouched.
    out = Path(spec.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean_incomplete(out)
    resume_from = latest_complete_checkpoint(out) if spec.resume else None
    if not spec.resume:
        for _step, path in list_checkpoints(out, complete_only=False):
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(method.best_dir, ignore_errors=True)
    if emitter.should_stop():
        return _cancelled(spec, emitter, started)

    before = None
    if method.eval_rows:
        emitter.status("evaluating", f"evaluating the base model on {len(method.eval_rows)} rows")
        before = method.evaluate("before")

    emitter.status("training", f"resuming from {resume_from}" if resume_from else "training")
    outcome = method.train(resume_from)
    if outcome.cancelled:
        return _cancelled(spec, emitter, started, outcome.final_step, outcome.total_steps)

    # load_best_model_at_end: the result is the lowest-eval-loss weights (the last ones only if they are the best).
    best = method.keep_best_result(outcome.final_step)
    after = None
    if method.eval_rows:
        emitter.status("evaluating", "evaluating the fine-tuned model")
        after = method.evaluate("after")
    metrics = {**_metrics(method, before, after), **best}

    emitter.status("saving", "saving the final model")
    final = out / FINAL_DIR
    tmp = out / f".{FINAL_DIR}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    method.save_final(str(tmp))
    _write_card(spec, tmp, metrics, report.files, emitter)
    _publish_dir(tmp, final)

    artifacts = _export(spec, model_path, str(final), emitter)
    comparison = _compare(spec, model_path, str(final), method.eval_examples, emitter)

    failed = [a for a in artifacts if "error" in a]
    message = f"trained {outcome.final_step} steps" + (f"; {len(failed)} export(s) failed" if failed else "")
    if outcome.early_stopped:
        message += " (early stopping)"
    if best.get("best_model_restored"):
        message += f"; kept the best weights, from step {best['best_step']}"
    result = TrainingResult(
        job_id=spec.job_id,
        status="succeeded",
        final_step=outcome.final_step,
        total_steps=outcome.total_steps,
        metrics=metrics,
        model_dir=str(final),
        output_dir=spec.output_dir,
        artifacts=tuple(artifacts),
        data=(method.report or report).to_dict(),
        versions=library_versions(),
        device={**device.to_dict(), "unsloth": use_unsloth},
        checkpoint=latest_complete_checkpoint(out),
        message=message,
        comparison=comparison,
        duration_s=round(time.time() - started, 2),
    )
    _atomic_write_json(out / RESULT_FILE, result.to_dict())
    emitter.status("succeeded", message)
    return result


def _write_card(
    spec: TrainingSpec, folder: Path, metrics: dict[str, Any], files: Sequence[str], emitter: Emitter
) -> None:
    try:
        from .exporters import write_model_card
    except ImportError:
        return
    try:
        write_model_card(
            str(folder),
            base_model=spec.base_model,
            datasets=list(files),
            method=spec.method,
            weights=spec.weights,
            hyperparameters=spec.hyper.to_dict(),
            metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        )
    except Exception as exc:  # a model card must never cost the trained model
        logger.exception("job %s: model card failed", spec.job_id)
        emitter.log("warning", f"model card not written: {exc}")


def _export(spec: TrainingSpec, model_path: str, final: str, emitter: Emitter) -> list[dict[str, Any]]:
    if not spec.export_formats:
        return []
    emitter.status("exporting", ", ".join(spec.export_formats))
    try:
        from .exporters import export_artifact
    except ImportError as exc:
        emitter.log("error", f"exporters are not available: {exc}")
        return [{"kind": name, "error": "exporters not available"} for name in spec.export_formats]
    artifacts = []
    for name in spec.export_formats:
        try:
            artifact = export_artifact(
                name, model_dir=final, base_model_path=model_path, out_dir=os.path.join(spec.output_dir, EXPORTS_DIR)
            )
            artifacts.append(artifact.to_dict())
            emitter.log("info", f"exported {name}: {artifact.path}")
        except (ExportError, EngineError) as exc:
            artifacts.append({"kind": name, "error": str(exc)})
            emitter.log("error", f"export {name} failed: {exc}")
    return artifacts


def _compare(
    spec: TrainingSpec, model_path: str, final: str, examples: Sequence[dict[str, Any]], emitter: Emitter
) -> dict[str, Any] | None:
    if spec.compare_prompts <= 0:
        return None
    prompts = _prompts_for_comparison(examples, spec.compare_prompts)
    if not prompts:
        emitter.log("warning", "compare_prompts: no held-out prompts to compare on")
        return None
    emitter.status("evaluating", f"comparing base and fine-tuned answers on {len(prompts)} prompts")
    try:
        from .evaluation import compare_models

        scored = [ex for ex in examples if "messages" in ex][: spec.compare_prompts]
        return compare_models(
            model_path,
            final,
            prompts,
            max_new_tokens=64,
            eval_examples=scored or None,
            max_length=spec.hyper.max_length,
        )
    except Exception as exc:  # the comparison is informative; never fail a finished run for it
        logger.exception("job %s: comparison failed", spec.job_id)
        emitter.log("warning", f"base/fine-tuned comparison failed: {exc}")
        return None

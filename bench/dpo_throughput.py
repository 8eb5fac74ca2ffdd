"""Preference-training throughput: our engine's LoRA-DPO (or ORPO, ``--method orpo``) path vs TRL's `DPOTrainer`
(`ORPOTrainer`) with its defaults and with its best settings.

Same model (the embedded SmolLM2-135M-Instruct), same data (the first pairs of
../shared/datasets/hh_rlhf_harmless_test.jsonl.gz, read by the engine's loader into conversational
prompt/chosen/rejected rows for all sides), same batch size, max length, step count, learning rate, beta, LoRA
rank/alpha/targets, seed and torch intra-op thread count (``--threads``; by default the parent picks it once with
the engine's own measurement, ``choose_cpu_threads``, and every side uses it). Each side runs in its own process (so
peak RSS is its own) and reports real (non-padding) tokens/s over the timed steps (the first step, a warm-up, is
excluded), the time spent precomputing the reference log-probs (where a side does), the wall time of its whole run
(model loading, data preparation, precompute and training), peak RSS and its per-step loss curve.

Sides:
- ours: `run_training` with method dpo (on CPU: `trainers/dpo_packed.py`) or orpo (`trainers/orpo_packed.py`);
- trl-default: `DPOConfig` defaults except the matched values above (so: gradient checkpointing on, the reference
  forward every step, the base loaded in fp32, TRL's default `bf16=True`, which on a CPU without native bf16 means
  emulated bf16);
- trl-best: `precompute_ref_log_probs=True`, `padding_free=True` (TRL 1.16 warns and falls back to padding; what it
  did is printed), no gradient checkpointing, bf16 autocast and a bf16 frozen base only where the CPU has native
  bf16. (TRL 1.16 has no `use_logits_to_keep` for DPO: its fused LM head already scores only labelled positions on
  Triton devices, and every position elsewhere.)
- with ``--method orpo``, TRL's `trl.experimental.orpo.ORPOTrainer`: defaults as above (gradient checkpointing on,
  bf16 on); best: no gradient checkpointing, bf16 autocast and a bf16 frozen base only where native. ORPO has no
  reference model and TRL 1.16's ORPO has no padding-free option.
- with ``--method kto``, TRL's `KTOTrainer` on unpaired rows (each pair's chosen answer desirable, its rejected one
  undesirable, so ``--rows`` and the batch count rows, not pairs): defaults as above (gradient checkpointing on, the
  reference forward every step, bf16 on); best: precomputed reference log-probs, no gradient checkpointing, bf16
  autocast and a bf16 frozen base only where native. Ours is ``trainers/kto_packed.py``. Tokens are counted on the
  rows themselves (attention mask), not on the KL rows every side also runs.

    .venv/bin/python bench/dpo_throughput.py                   # defaults: 10 steps, batch 4, max_length 512
    .venv/bin/python bench/dpo_throughput.py --steps 6 --batch-size 4
    .venv/bin/python bench/dpo_throughput.py --sides ours trl-best
    .venv/bin/python bench/dpo_throughput.py --method orpo --sides ours trl-best
    .venv/bin/python bench/dpo_throughput.py --method kto --sides ours trl-best
    .venv/bin/python bench/dpo_throughput.py --weights full --sides ours trl-best   # full fine-tuning

With ``--weights full`` every side trains every weight (fp32 master weights, bf16 autocast where native; TRL's
reference: the model before training where precomputed, else its frozen copy) instead of a LoRA adapter.

Target (DPO): ours >= 2.0x TRL-best's real tokens/s. ORPO and KTO are measured the same way (the issue sets no
figure).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.trl_timing import attach_step_timer, peak_rss_mb, run_worker, summarize  # noqa: E402

# Public datasets: FINETUNE_DATASETS_DIR, as the tests take them.
SHARED = Path(os.environ.get("FINETUNE_DATASETS_DIR", ROOT.parent / "shared" / "datasets"))
DATA = SHARED / "hh_rlhf_harmless_test.jsonl.gz"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SIDES = ("ours", "trl-default", "trl-best")


def _write_rows(n: int, dest: Path) -> Path:
    """The first ``n`` HH-RLHF pairs, gzipped JSON Lines like the original."""
    with gzip.open(DATA, "rt", encoding="utf-8") as src, gzip.open(dest, "wt", encoding="utf-8") as out:
        for i, line in enumerate(src):
            if i == n:
                break
            out.write(line)
    return dest


def _pairs(path: Path) -> list[dict[str, Any]]:
    """The rows as the engine hands them to TRL: conversational prompt/chosen/rejected."""
    from training.engine.data import load_examples

    return [
        {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
        for r in load_examples([path]).examples
    ]


def _write_kto_rows(n: int, dest: Path) -> Path:
    """``n`` KTO rows from the first HH-RLHF pairs (chosen desirable, rejected undesirable; pairs with an empty
    answer skipped), as JSON Lines of ``{"messages", "label"}``."""
    source = _write_rows(n, dest.with_suffix(".pairs.jsonl.gz"))
    rows: list[dict[str, Any]] = []
    for pair in _pairs(source):
        if not (pair["chosen"][-1]["content"].strip() and pair["rejected"][-1]["content"].strip()):
            continue
        rows.append({"messages": [*pair["prompt"], *pair["chosen"]], "label": True})
        rows.append({"messages": [*pair["prompt"], *pair["rejected"]], "label": False})
    dest.write_text("".join(json.dumps(r) + "\n" for r in rows[:n]), encoding="utf-8")
    return dest


def _kto_rows(path: Path) -> list[dict[str, Any]]:
    """The rows as the engine hands them to TRL: conversational prompt/completion/label."""
    from training.engine.data import load_examples

    return [
        {"prompt": r["prompt"], "completion": r["completion"], "label": bool(r["label"])}
        for r in load_examples([path]).examples
    ]


def _write_data(args: argparse.Namespace, folder: Path) -> Path:
    if args.method == "kto":
        return _write_kto_rows(args.rows, folder / "kto.jsonl")
    return _write_rows(args.rows, folder / "hh.jsonl.gz")


def _bf16_native() -> bool:
    from training.engine.device import detect_device

    return bool(detect_device().bf16_native)


# --- workers (each in its own process) -----------------------------------------------------------------------------


def worker_ours(args: argparse.Namespace) -> dict[str, Any]:
    from training.engine.callbacks.base import ListCallback
    from training.engine.run import run_training
    from training.engine.spec import TrainingSpec

    with tempfile.TemporaryDirectory() as tmp:
        data = _write_data(args, Path(tmp))
        spec = TrainingSpec.from_dict(
            {
                "job_id": f"bench-{args.method}-ours",
                "base_model": "embedded/SmolLM2-135M-Instruct",
                "method": args.method,
                "weights": args.weights,
                "data": {"train_files": [str(data)]},
                "hyper": {
                    "max_steps": args.steps,
                    "per_device_train_batch_size": args.batch_size,
                    "max_length": args.max_length,
                    "learning_rate": args.lr,
                    "beta": 0.1,
                    "lora_r": 16,
                    "lora_alpha": 32,
                    "lora_dropout": 0.0,
                    "lora_target_modules": TARGETS,
                    "logging_steps": 1,
                    "save_steps": 10_000,
                    "validation_split": 0.0,
                    "seed": 42,
                    "warmup_ratio": 0.0,
                },
                "output_dir": str(Path(tmp) / "run"),
            }
        )
        cb = ListCallback()
        started = time.perf_counter()
        result = run_training(spec, callbacks=[cb])
        run_s = time.perf_counter() - started
    steps = [
        {
            "step": m.step,
            "loss": m.loss,
            "tokens": m.tokens,
            "busy_s": (m.tokens / m.tokens_per_s) if m.tokens_per_s else 0.0,
        }
        for m in cb.metrics
    ]
    logs = [e.line for e in cb.of_type("log")]
    precompute_s = None
    for line in logs:
        if line.startswith(f"{args.method.upper()} reference log-probs precomputed:"):
            precompute_s = float(line.rsplit(" in ", 1)[1].split()[0])
    return {
        "steps": steps,
        "peak_rss_mb": peak_rss_mb(),
        "precompute_s": precompute_s,
        "run_s": run_s,
        "setup": {
            "status": result.status,
            "device": result.device,
            "path": next((line for line in logs if line.startswith(f"{args.method.upper()} path:")), None),
        },
    }


def worker_trl(args: argparse.Namespace, best: bool) -> dict[str, Any]:
    import logging
    import warnings

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    from training.engine.embedded import embedded_model_path

    torch.set_num_threads(args.threads)  # as ours (the engine reads FINETUNE_CPU_THREADS)
    path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    with tempfile.TemporaryDirectory() as tmp:
        data = _write_data(args, Path(tmp))
        dataset = Dataset.from_list(_kto_rows(data) if args.method == "kto" else _pairs(data))
    native = _bf16_native()

    timing = {"precompute_s": 0.0}

    def timed(base: type) -> type:
        class Timed(base):  # type: ignore[misc, valid-type]
            def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
                started = time.perf_counter()
                try:
                    return super()._precompute_ref_logps(dataset, name, batch_size)
                finally:
                    timing["precompute_s"] += time.perf_counter() - started

        return Timed

    # Matched with ours: batch size, steps, max length, LR, beta, LoRA, seed, logging every step, no checkpoints.
    # (use_cpu: TRL's default bf16=True refuses to start on a machine without a GPU otherwise.)
    kwargs: dict[str, Any] = {
        "output_dir": tempfile.mkdtemp(),
        "max_steps": args.steps,
        "per_device_train_batch_size": args.batch_size,
        "max_length": args.max_length,
        "learning_rate": args.lr,
        "beta": 0.1,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "seed": 42,
        "use_cpu": not torch.cuda.is_available(),
        "disable_tqdm": True,
    }
    orpo, kto = args.method == "orpo", args.method == "kto"
    if kto:
        kwargs.update(remove_unused_columns=False, dataset_num_proc=None)  # KTO keeps its label and KL columns
    if best:
        kwargs.update(gradient_checkpointing=False, bf16=native)
        if not orpo:  # a reference model (DPO, KTO): its log-probs precomputed, in batches as ours
            kwargs.update(precompute_ref_log_probs=True, precompute_ref_batch_size=2 * args.batch_size)
        if not (orpo or kto):
            kwargs["padding_free"] = True
    if best and native and args.weights == "lora":  # a frozen base in the compute dtype, as ours (full: fp32)
        kwargs["model_init_kwargs"] = {"dtype": "bfloat16"}
    messages: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Grab(level=logging.WARNING)
    logging.getLogger("trl").addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = ORPOConfig(**kwargs) if orpo else KTOConfig(**kwargs) if kto else DPOConfig(**kwargs)
        peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
        started = time.perf_counter()
        trainer = (ORPOTrainer if orpo else timed(KTOTrainer) if kto else timed(DPOTrainer))(
            model=str(path),
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config if args.weights == "lora" else None,
        )
        timer = attach_step_timer(trainer)
        trainer.train()
        run_s = time.perf_counter() - started
    notes = [m for m in messages + [str(w.message) for w in caught] if "padding" in m.lower()]
    return {
        "steps": timer.steps,
        "peak_rss_mb": peak_rss_mb(),
        "precompute_s": timing["precompute_s"] if best and not orpo else None,
        "run_s": run_s,
        "setup": {
            "bf16": config.bf16,
            "gradient_checkpointing": config.gradient_checkpointing,
            "precompute_ref_log_probs": getattr(config, "precompute_ref_log_probs", None),
            "padding_free_requested": getattr(config, "padding_free", None),
            "padding_free_note": notes[0][:160] if notes else "no warning: padded batches as usual",
            "base_dtype": str(getattr(trainer.model, "get_base_model", lambda: trainer.model)().dtype),
            "threads": torch.get_num_threads(),
        },
    }


# --- the parent ----------------------------------------------------------------------------------------------------


def _worker(name: str, args: argparse.Namespace) -> dict[str, Any]:
    argv = ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length)]
    argv += ["--rows", str(args.rows), "--lr", str(args.lr), "--threads", str(args.threads), "--method", args.method]
    argv += ["--weights", args.weights]
    return run_worker(__file__, name, argv, env={"TQDM_DISABLE": "1", "FINETUNE_CPU_THREADS": str(args.threads)})


def _summarize(r: dict[str, Any]) -> dict[str, Any]:
    return {**summarize(r), "precompute_s": r.get("precompute_s"), "run_s": r.get("run_s")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument(
        "--rows", type=int, default=0, help="pairs (KTO: rows) of data (default: steps x batch size, one epoch)"
    )
    p.add_argument("--lr", type=float, default=5e-6)
    p.add_argument("--threads", type=int, default=0, help="torch threads for every side (default: measured once)")
    p.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    p.add_argument("--method", choices=("dpo", "orpo", "kto"), default="dpo")
    p.add_argument("--weights", choices=("lora", "full"), default="lora", help="a LoRA adapter (r16) or every weight")
    p.add_argument("--worker", choices=SIDES)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    if args.rows <= 0:
        args.rows = args.steps * args.batch_size  # one epoch: every side sees the same pairs once
    if args.worker:
        result = worker_ours(args) if args.worker == "ours" else worker_trl(args, best=args.worker == "trl-best")
        print("RESULT " + json.dumps(result), flush=True)
        return

    if args.threads <= 0:
        from training.engine.device import choose_cpu_threads

        args.threads, timings = choose_cpu_threads()
        print(f"threads: {args.threads} for every side (measured: {timings})")
    weights = "LoRA (r16, attention+MLP)" if args.weights == "lora" else "full-weight"
    print(
        f"bench/dpo_throughput.py: SmolLM2-135M-Instruct {weights} {args.method.upper()}, first "
        f"{args.rows} HH-RLHF {'rows' if args.method == 'kto' else 'pairs'}, {args.steps} steps, batch "
        f"{args.batch_size}, max_length {args.max_length}, beta 0.1, lr {args.lr}, "
        f"{args.threads} threads, load {os.getloadavg()[0]:.2f}, native bf16 {_bf16_native()}"
    )
    results: dict[str, dict[str, Any]] = {}
    for name in args.sides:
        t0 = time.perf_counter()
        raw = _worker(name, args)
        results[name] = {**_summarize(raw), "setup": raw.get("setup"), "wall_s": time.perf_counter() - t0}
        s = results[name]
        if args.method == "orpo":
            pre = "none (no reference model)"
        elif s["precompute_s"] is not None:
            pre = f"{s['precompute_s']:.1f} s"
        else:
            pre = "none (reference forward per step)"
        print(
            f"  {name:11s} {s['tokens_per_s']:8.1f} real tokens/s  ({s['tokens']} tokens in {s['busy_s']:.1f} s, "
            f"steps 2..{args.steps})  precompute {pre}  run {s['run_s']:.1f} s  process wall {s['wall_s']:.0f} s  "
            f"peak RSS {s['peak_rss_mb']:.0f} MB"
        )
        print(f"              loss: {' '.join(f'{x:.4f}' if x is not None else '-' for x in s['losses'])}")
        print(f"              setup: {s['setup']}")
    ours = results.get("ours")
    for base in ("trl-best", "trl-default"):
        if ours is None or base not in results or not results[base]["tokens_per_s"]:
            continue
        b = results[base]
        speedup = ours["tokens_per_s"] / b["tokens_per_s"]
        run_ratio = b["run_s"] / ours["run_s"]
        target = f" (target >= 2.0x)  -> {'MET' if speedup >= 2 else 'NOT MET'}" if base == "trl-best" else ""
        if args.method != "dpo" and target:
            target = f" (DPO's target >= 2.0x: {'met' if speedup >= 2 else 'not met'})"
        print(f"speed-up vs {base}: {speedup:.2f}x real tokens/s{target}; whole run {run_ratio:.2f}x faster")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results}, indent=2))


if __name__ == "__main__":
    main()

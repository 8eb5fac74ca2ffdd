"""Training throughput: our engine's default LoRA-SFT path vs TRL's `SFTTrainer` configured at its best, and with
its defaults.

Same model (the embedded SmolLM2-135M-Instruct), same data (the first rows of ../shared/datasets/alpaca_en_demo.json
as chat messages), same batch size, max length, step count, learning rate, LoRA rank/alpha/targets and seed. Each side
runs in its own process (so peak RSS is its own) and reports real (non-padding) tokens/s over the timed steps (the
first step, a warm-up, is excluded from both), peak RSS and its per-step loss curve. The parent also measures this
CPU's bf16 and fp32 matmul rooflines and prints our tokens/s as a share of them (model FLOPs per token for LoRA
training: forward 2N + backward input gradients 2N, frozen weights get no weight gradients, plus the causal
attention's matmuls for the rows' lengths; ``lora_flops_per_token``). The lm_head's 4 x hidden x vocab is counted for
every token, as model FLOPs are, though our loss only projects the trained (assistant) tokens.

    .venv/bin/python bench/train_throughput.py                 # defaults: 10 steps, batch 4, max_length 512
    .venv/bin/python bench/train_throughput.py --steps 6 --batch-size 2 --skip-defaults
    .venv/bin/python bench/train_throughput.py --precision fp32 --skip-defaults   # the fp32 path, fp32 roofline

Three sides: ours, TRL at its best for the machine ("trl-best": padding-free batches, no gradient checkpointing, bf16
only where the CPU/GPU computes it natively, Liger on CUDA) and TRL's defaults ("trl"). Targets: ours >= 1.6x
TRL-best's real tokens/s, an equivalent loss curve, no more peak RSS; >= 70% of the matmul roofline of the precision
ours actually used.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.trl_timing import attach_step_timer, matmul_gflops, peak_rss_mb, run_worker, summarize  # noqa: E402

# Public datasets (Alpaca etc.): FINETUNE_DATASETS_DIR, as the tests take them.
SHARED = Path(os.environ.get("FINETUNE_DATASETS_DIR", ROOT.parent / "shared" / "datasets"))
DATA = SHARED / "alpaca_en_demo.json"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _rows(n: int, max_length: int) -> list[dict[str, Any]]:
    """The first ``n`` Alpaca rows whose chat rendering fits ``max_length`` tokens, as chat rows for our engine
    (`messages`; the loss is on the assistant turn only). Every side trains on exactly these tokens: none is
    truncated (TRL's padding-free mode does not truncate)."""
    from transformers import AutoTokenizer

    from training.engine.embedded import embedded_model_path

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path())
    out = []
    for r in json.loads(DATA.read_text()):
        prompt = r["instruction"] + (("\n\n" + r["input"]) if r.get("input") else "")
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": r["output"]}]
        if len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]) > max_length:
            continue
        out.append({"messages": messages})
        if len(out) == n:
            break
    return out


def _prompt_completion_rows(n: int, max_length: int) -> list[dict[str, Any]]:
    """The same rows in TRL's conversational prompt/completion form, so TRL's default (completion-only loss) trains
    on the same tokens as ours."""
    return [{"prompt": r["messages"][:1], "completion": r["messages"][1:]} for r in _rows(n, max_length)]


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def _RssByPhase(base: type) -> type:  # noqa: N802 (a class factory)
    """``base`` (the engine's ListCallback) that also records the peak RSS reached by the start of each phase (the
    libraries imported, the model loaded, the base model evaluated, the first training steps): where the memory goes."""

    class RssByPhase(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.phases: dict[str, float] = {"libraries imported": round(_rss_mb())}

        def on_event(self, event: Any) -> None:
            super().on_event(event)
            label = None
            if event.type == "status":
                label = {"evaluating": "model loaded", "training": "before the first step"}.get(event.status)
            elif event.type == "metric" and event.step <= 2:
                label = f"after training step {event.step}"
            if label and label not in self.phases:
                self.phases[label] = round(peak_rss_mb())

    return RssByPhase


# --- workers (each in its own process) -----------------------------------------------------------------------------


def worker_ours(args: argparse.Namespace) -> dict[str, Any]:
    from training.engine.callbacks.base import ListCallback
    from training.engine.run import run_training
    from training.engine.spec import TrainingSpec

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in _rows(args.rows, args.max_length)))
        spec = TrainingSpec.from_dict(
            {
                "job_id": "bench-ours",
                "base_model": "embedded/SmolLM2-135M-Instruct",
                "method": "sft",
                "weights": "lora",
                "data": {"train_files": [str(data)], "format": "messages"},
                "hyper": {
                    "max_steps": args.steps,
                    "per_device_train_batch_size": args.batch_size,
                    "max_length": args.max_length,
                    "learning_rate": args.lr,
                    "precision": args.precision,
                    "lora_r": 16,
                    "lora_alpha": 32,
                    "lora_dropout": 0.0,
                    "lora_target_modules": TARGETS,
                    "logging_steps": 1,
                    "save_steps": 10_000,
                    "seed": 42,
                    "warmup_ratio": 0.0,
                    "validation_split": 0.0,  # every row trains, as in TRL's runs (no held-out rows, no evaluation)
                },
                "output_dir": str(Path(tmp) / "run"),
            }
        )
        cb = _RssByPhase(ListCallback)()
        result = run_training(spec, callbacks=[cb])
    metrics = cb.metrics
    steps = [
        {
            "step": m.step,
            "loss": m.loss,
            "tokens": m.tokens,
            "busy_s": (m.tokens / m.tokens_per_s) if m.tokens_per_s else 0.0,
        }
        for m in metrics
    ]
    return {
        "name": "ours",
        "steps": steps,
        "peak_rss_mb": peak_rss_mb(),
        "device": result.device,
        "status": result.status,
        "rss_by_phase_mb": cb.phases,
    }


def worker_trl(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from training.engine.embedded import embedded_model_path

    path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    dataset = Dataset.from_list(_prompt_completion_rows(args.rows, args.max_length))
    # TRL's defaults, except what must match ours: batch size, steps, max length, LR, LoRA, seed, logging every step.
    # (use_cpu: TRL's default bf16=True refuses to start on a machine without a GPU otherwise.)
    common: dict[str, Any] = {
        "output_dir": tempfile.mkdtemp(),
        "max_steps": args.steps,
        "per_device_train_batch_size": args.batch_size,
        "learning_rate": args.lr,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "seed": 42,
        "use_cpu": not torch.cuda.is_available(),
    }
    if args.worker == "trl-best":
        # TRL at its best for this machine: padding-free batches (the rows already fit max_length, which TRL does not
        # enforce without packing), no gradient checkpointing, bf16 only where the hardware computes it, Liger's
        # kernels on CUDA. TRL 1.16's own chunked LM head (log-probs without full logits) is on in both TRL runs.
        from training.engine.device import detect_device
        from training.engine.trainers.kernels import liger_available

        native_bf16 = detect_device().bf16_native if args.precision == "auto" else args.precision == "bf16"
        config = SFTConfig(
            **common,
            max_length=None,
            padding_free=True,
            gradient_checkpointing=False,
            bf16=native_bf16,
            use_liger_kernel=torch.cuda.is_available() and liger_available(),
            model_init_kwargs={"dtype": "float32", "attn_implementation": "sdpa"},
        )
    else:
        config = SFTConfig(**common, max_length=args.max_length)
    peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
    trainer = SFTTrainer(
        model=str(path),
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    timer = attach_step_timer(trainer)
    trainer.train()
    return {
        "name": args.worker,
        "steps": timer.steps,
        "peak_rss_mb": peak_rss_mb(),
        "device": {
            "bf16": config.bf16,
            "gradient_checkpointing": config.gradient_checkpointing,
            "padding_free": config.padding_free,
            "liger": config.use_liger_kernel,
            "fp32_matmul_precision": torch.get_float32_matmul_precision(),
        },
    }


# --- the parent: roofline, both workers, comparison ---------------------------------------------------------------


def lora_flops_per_token(lengths: list[int] | None = None) -> float:
    """Model FLOPs per trained token of LoRA training: 4N (forward 2N + input-gradient backward 2N over every matmul
    weight, lm_head included; frozen weights get no weight gradients) plus, given the rows' token ``lengths``, causal
    attention (QK^T and PV: 4 x head_dim x position per head forward, twice that backward, so 6 x hidden x L^2 per
    row and layer, as in PaLM's model-FLOPs utilization), averaged over the tokens."""
    from transformers import AutoConfig

    from training.engine.embedded import embedded_model_path

    c = AutoConfig.from_pretrained(embedded_model_path())
    h, i, layers, v = c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.vocab_size
    kv = h * c.num_key_value_heads // c.num_attention_heads
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i
    dense = 4.0 * (layers * per_layer + h * v)
    if not lengths:
        return dense
    return dense + 6.0 * h * layers * sum(n * n for n in lengths) / sum(lengths)


def model_gemm_gflops(tokens: int, dtype_name: str, repeats: int = 5) -> float:
    """The rate of this model's own dense matmuls at ``tokens`` rows (one step's packed tokens), timed alone, GFLOP/s:
    for every projection of a decoder layer and the lm_head, the forward ``x @ W.T`` and the input-gradient ``g @ W``
    of LoRA training, weighted by their FLOPs (the frozen weights' products, which are nearly all of the model FLOPs).
    The best time over ``repeats`` after a warm-up, as the 2048^3 roofline is measured. A step cannot beat this rate
    on these shapes: the 2048^3 product keeps the matrix units busier than a 576-wide layer of a small model can."""
    import torch
    from transformers import AutoConfig

    from training.engine.embedded import embedded_model_path

    c = AutoConfig.from_pretrained(embedded_model_path())
    dtype = getattr(torch, dtype_name)
    h, i, v = c.hidden_size, c.intermediate_size, c.vocab_size
    kv = h * c.num_key_value_heads // c.num_attention_heads
    layer = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]  # (in, out): q k v o gate up down
    shapes = [(s, c.num_hidden_layers) for s in layer] + [((h, v), 1)]
    flops = seconds = 0.0
    for (k, n), count in shapes:
        w = torch.randn(n, k).to(dtype)
        x, g = torch.randn(tokens, k).to(dtype), torch.randn(tokens, n).to(dtype)
        best = float("inf")
        for rep in range(repeats + 1):
            t0 = time.perf_counter()
            x @ w.t()
            g @ w
            if rep:  # the first is the warm-up (oneDNN builds its kernel for the shape)
                best = min(best, time.perf_counter() - t0)
        flops += count * 4.0 * tokens * k * n
        seconds += count * best
    return flops / seconds / 1e9


def _row_lengths(rows: int, max_length: int) -> list[int]:
    """Token count of each benchmark row as every side trains it (the chat template applied)."""
    from transformers import AutoTokenizer

    from training.engine.embedded import embedded_model_path

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path())
    return [
        len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
        for r in _rows(rows, max_length)
    ]


def _worker(name: str, args: argparse.Namespace, timeout: float | None = None) -> dict[str, Any]:
    argv = ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length)]
    argv += ["--precision", args.precision]
    return run_worker(__file__, name, [*argv, "--rows", str(args.rows), "--lr", str(args.lr)], timeout=timeout)


SIDES = ("ours", "trl-best", "trl")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--rows", type=int, default=0, help="rows of data (default: steps x batch size, one epoch)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="compute precision of ours and TRL-best (auto: bf16 where the CPU has bf16 units, else fp32); fp32 "
        "on a bf16 machine measures the path an AVX2-only machine takes, against the fp32 roofline",
    )
    p.add_argument("--worker", choices=SIDES)
    p.add_argument("--skip-defaults", action="store_true", help="leave TRL's defaults out (they are the slow side)")
    p.add_argument(
        "--defaults-timeout",
        type=float,
        default=900.0,
        help="seconds TRL's defaults may run before they are reported as not finished (their bf16 is emulated, and "
        "very slow, on a CPU without bf16 units)",
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    if args.rows <= 0:
        # One epoch: every side sees exactly the same examples once (each in its own order), so their mean losses
        # over the run are comparable.
        args.rows = args.steps * args.batch_size
    if args.worker:
        fn = worker_ours if args.worker == "ours" else worker_trl
        print("RESULT " + json.dumps(fn(args)), flush=True)
        return

    import torch

    print(
        f"bench/train_throughput.py: SmolLM2-135M-Instruct LoRA SFT, {args.steps} steps, batch {args.batch_size}, "
        f"max_length {args.max_length}, lr {args.lr}, {torch.get_num_threads()} threads, load "
        f"{os.getloadavg()[0]:.2f}"
    )
    from training.engine.device import cpu_bf16_native

    # Emulated bf16 (a CPU without bf16 units) runs a 2048^3 matmul at well under 1 GFLOP/s: a minute per product,
    # and a roofline no run uses. It is measured only where bf16 is native, on a GPU, or asked for.
    measure_bf16 = args.precision == "bf16" or cpu_bf16_native() or torch.cuda.is_available()

    def rooflines() -> dict[str, float]:
        return {
            "bf16": matmul_gflops("bfloat16") if measure_bf16 else float("nan"),
            "fp32": matmul_gflops("float32"),
        }

    def show(r: dict[str, float]) -> str:
        bf16 = f"{r['bf16']:.1f} GFLOP/s" if measure_bf16 else "not measured (emulated on this CPU)"
        return f"bf16 {bf16}, fp32 {r['fp32']:.1f} GFLOP/s"

    roof = rooflines()
    print(f"matmul roofline (2048^3, measured): {show(roof)}")
    results = {}
    for name in SIDES:
        if name == "trl" and args.skip_defaults:
            continue
        t0 = time.perf_counter()
        try:
            raw = _worker(name, args, timeout=args.defaults_timeout if name == "trl" else None)
        except subprocess.TimeoutExpired:
            print(f"  {name:8s} did not finish {args.steps} steps in {args.defaults_timeout:.0f} s (stopped)")
            continue
        results[name] = {**summarize(raw), "device": raw.get("device"), "wall_s": time.perf_counter() - t0}
        s = results[name]
        print(
            f"  {name:8s} {s['tokens_per_s']:8.1f} real tokens/s  ({s['tokens']} tokens in {s['busy_s']:.1f} s, "
            f"steps 2..{args.steps})  peak RSS {s['peak_rss_mb']:.0f} MB  process wall {s['wall_s']:.0f} s"
        )
        print(f"           loss: {' '.join(f'{x:.3f}' if x is not None else '-' for x in s['losses'])}")
        print(f"           setup: {s['device']}")
        if raw.get("rss_by_phase_mb"):
            phases = ", ".join(f"{k} {v:.0f}" for k, v in raw["rss_by_phase_mb"].items())
            print(f"           peak RSS by phase (MB): {phases}")
        if name == "ours":
            # This kind of machine's speed drifts (shared hosts): the roofline is measured again right after our
            # run, and our share is taken against the mean of the two measurements around it.
            after = rooflines()
            print(f"matmul roofline again after ours: {show(after)}")
            roof = {k: (roof[k] + after[k]) / 2 for k in roof}
    ours, best = results["ours"], results["trl-best"]
    speedup = ours["tokens_per_s"] / best["tokens_per_s"] if best["tokens_per_s"] else float("inf")
    mem_ratio = ours["peak_rss_mb"] / best["peak_rss_mb"]
    lo = [x for x in ours["losses"] if x is not None]
    lb = [x for x in best["losses"] if x is not None]
    lo_mean, lb_mean = sum(lo) / len(lo), sum(lb) / len(lb)
    rel = abs(lo_mean - lb_mean) / lb_mean
    lengths = _row_lengths(args.rows, args.max_length)
    flops = lora_flops_per_token(lengths)
    attention_share = 1 - lora_flops_per_token() / flops
    achieved = ours["tokens_per_s"] * flops / 1e9
    precision = (ours.get("device") or {}).get("precision", "fp32")
    used_roof = roof["bf16"] if precision == "bf16" else roof["fp32"]
    share = achieved / used_roof
    step_tokens = round(sum(lengths) / args.steps)
    gemm = model_gemm_gflops(step_tokens, "bfloat16" if precision == "bf16" else "float32")
    print(
        f"speed-up vs TRL-best: {speedup:.2f}x real tokens/s (target >= 1.6x)  -> {'MET' if speedup >= 1.6 else 'NOT MET'}"
    )
    if "trl" in results and results["trl"]["tokens_per_s"]:
        print(f"speed-up vs TRL defaults: {ours['tokens_per_s'] / results['trl']['tokens_per_s']:.2f}x")
    print(
        f"peak RSS: ours {ours['peak_rss_mb']:.0f} MB / TRL-best {best['peak_rss_mb']:.0f} MB = {mem_ratio:.2f} "
        f"(target <= 1.00)  -> {'MET' if mem_ratio <= 1.0 else 'NOT MET'}"
    )
    print(
        f"loss curve: mean over the epoch ours {lo_mean:.3f} vs TRL-best {lb_mean:.3f} "
        f"({rel * 100:.1f}% apart; equivalent if <= 10%)  -> {'MET' if rel <= 0.10 else 'NOT MET'}"
    )
    print(
        f"roofline: ours does {achieved:.1f} GFLOP/s of model FLOPs ({flops / 1e9:.3f} GFLOP/token, causal attention "
        f"{attention_share * 100:.1f}% of it) in {precision} = "
        f"{share * 100:.0f}% of the {precision} matmul roofline ({used_roof:.0f} GFLOP/s, the mean of the two "
        f"measurements; target >= 70%)  -> {'MET' if share >= 0.70 else 'NOT MET'}"
    )
    print(
        f"the model's own matmuls alone at {step_tokens} tokens per step (the mean here): {gemm:.0f} GFLOP/s in "
        f"{precision} = {gemm / used_roof * 100:.0f}% of that roofline; ours reaches {achieved / gemm * 100:.0f}% of "
        f"their rate (the rest of a step: the elementwise work between them, attention, the loss, the optimizer)"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"json": str(args.json)},
                    "roofline_gflops": roof,
                    "results": results,
                    "speedup_vs_trl_best": speedup,
                    "rss_ratio": mem_ratio,
                    "loss_rel_diff": rel,
                    "precision": precision,
                    "roofline_share": share,
                    "model_gemm_gflops": gemm,
                    "model_gemm_share": achieved / gemm,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()

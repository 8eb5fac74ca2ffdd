"""GPU training throughput: our engine vs TRL at its best, LoRA and QLoRA, on one GPU and on all of them.

What it measures, for each case (LoRA; QLoRA on CUDA only, bitsandbytes' 4-bit weights need it):

- **ours**: ``training.engine.run.run_training`` on a ``TrainingSpec`` with the engine's defaults (``precision`` and
  ``gradient_checkpointing`` ``auto``, the SFT path it picks: Liger kernels, padding-free batches and FlashAttention-2
  when installed, else SDPA), metrics collected through a ``ListCallback``;
- **trl-best**: TRL's ``SFTTrainer`` configured as fast as TRL goes: ``padding_free=True``, gradient checkpointing
  off, bf16 (fp16 on GPUs without bf16, fp32 on CPU) with the frozen weights loaded in that dtype,
  ``use_liger_kernel=True`` when ``liger-kernel`` is importable, ``attn_implementation="flash_attention_2"`` when
  ``flash-attn`` is importable, else ``"sdpa"`` (transformers splits flattened rows by their ``position_ids`` under
  SDPA too). TRL 1.16 refuses ``padding_free=True`` together with ``max_length`` unless it packs (it would not
  truncate), so TRL gets ``max_length=None``; the parent counts the rows longer than ``--max-length`` (only ours would
  cut them) and prints that count, 0 with the defaults on the Alpaca demo rows;

with the same model, data (the first Alpaca demo rows as chat messages; TRL gets them as prompt/completion, so both
train on the answer only), batch size, step count, learning rate, LoRA rank/alpha/targets and seed. Each side runs in
its own process (one GPU visible) and reports real (non-padding) tokens/s over the timed steps (step 1, the warm-up,
is excluded from both), peak memory (``torch.cuda.max_memory_allocated`` during training on CUDA, the process's peak
RSS on CPU) and its loss per step.

Scaling: ours with the distributed launcher, ``python -m training.engine.cli SPEC.json --nproc N`` (torchrun, DDP,
NCCL on CUDA / gloo on CPU; ``training/engine/launch.py``), same per-device batch, global tokens/s over the timed steps
against the one-process LoRA run above: efficiency = tok/s(N) / (N x tok/s(1)).

On a GPU machine (no network needed: the default model is the embedded SmolLM2-135M; pass a 0.5-1.5B local folder)::

    .venv/bin/python bench/gpu_throughput.py --model /models/Qwen2.5-0.5B-Instruct --json gpu.json
    .venv/bin/python bench/gpu_throughput.py --model /models/Qwen2.5-1.5B-Instruct --steps 30 --batch-size 8
    .venv/bin/python bench/gpu_throughput.py --cases lora --nproc 4     # scaling on 4 of the GPUs

Without CUDA the script forces ``--tiny`` (a random 2-layer Llama, hidden 64, with the embedded model's tokenizer
and vocabulary, written to a temp folder), skips QLoRA and scales over 2 gloo processes: the figures then only prove
that every path runs (a CI machine has a few cores), they say nothing about speed::

    .venv/bin/python bench/gpu_throughput.py --tiny --steps 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.trl_timing import attach_step_timer, peak_rss_mb, run_worker, summarize  # noqa: E402

# Public datasets (Alpaca etc.): FINETUNE_DATASETS_DIR, as the tests take them.
SHARED = Path(os.environ.get("FINETUNE_DATASETS_DIR", ROOT.parent / "shared" / "datasets"))
DATA = SHARED / "alpaca_en_demo.json"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_R, LORA_ALPHA = 16, 32
SEED = 42
WORKER_TIMEOUT_S = 3600


# --- data ------------------------------------------------------------------------------------------------------------


def _rows(n: int) -> list[dict[str, Any]]:
    """``n`` chat rows for our engine (``messages``; the loss is on the assistant turn only). The demo file's rows are
    repeated when ``n`` exceeds them (long GPU runs, several processes)."""
    source = json.loads(DATA.read_text())
    out = []
    for i in range(n):
        r = source[i % len(source)]
        prompt = r["instruction"] + (("\n\n" + r["input"]) if r.get("input") else "")
        out.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": r["output"]}]})
    return out


def _prompt_completion_rows(n: int) -> list[dict[str, Any]]:
    """The same rows in TRL's conversational prompt/completion form (completion-only loss, like ours)."""
    return [{"prompt": r["messages"][:1], "completion": r["messages"][1:]} for r in _rows(n)]


def _spec_dict(args: argparse.Namespace, case: str, data: Path, output: Path, *, nproc: int = 1) -> dict[str, Any]:
    """Our spec for ``case`` (lora/qlora): the engine's defaults, except what must match TRL's run."""
    hyper: dict[str, Any] = {
        "max_steps": args.steps,
        "per_device_train_batch_size": args.batch_size,
        "max_length": args.max_length,
        "learning_rate": args.lr,
        "lora_r": LORA_R,
        "lora_alpha": LORA_ALPHA,
        "lora_dropout": 0.0,
        "lora_target_modules": TARGETS,
        "logging_steps": 1,
        "save_steps": 0,
        "validation_split": 0.0,  # no evaluation before/after training: only the training steps matter here
        "seed": SEED,
        "warmup_ratio": 0.0,
    }
    if nproc > 1:
        hyper["num_processes"] = nproc
    return {
        "job_id": f"bench-{case}-{nproc}p",
        "base_model": args.model_path,
        "method": "sft",
        "weights": case,
        "data": {"train_files": [str(data)], "format": "messages"},
        "hyper": hyper,
        "output_dir": str(output),
    }


# --- measurements ----------------------------------------------------------------------------------------------------


def _cuda_peak_mb() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0


def _peak_mb(cuda_peak: float) -> tuple[float, str]:
    """(peak memory in MB, what it is): CUDA allocated during training on a GPU, else the process's peak RSS."""
    import torch

    if torch.cuda.is_available():
        return cuda_peak, "cuda_max_allocated"
    return peak_rss_mb(), "peak_rss"


# --- workers (each in its own process) -------------------------------------------------------------------------------


def worker_ours(args: argparse.Namespace) -> dict[str, Any]:
    """One single-process run of our engine; per-step tokens, busy time and loss from its metric events."""
    from training.engine.callbacks.base import Event, ListCallback, LogEvent, MetricEvent
    from training.engine.run import run_training
    from training.engine.spec import TrainingSpec

    class Recorder(ListCallback):
        """Also reads the CUDA peak at every metric event (the engine resets it when training starts)."""

        def __init__(self) -> None:
            super().__init__()
            self.cuda_peak_mb = 0.0

        def on_event(self, event: Event) -> None:
            super().on_event(event)
            if isinstance(event, MetricEvent):
                self.cuda_peak_mb = max(self.cuda_peak_mb, _cuda_peak_mb())

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in _rows(args.rows)))
        spec = TrainingSpec.from_dict(_spec_dict(args, args.case, data, Path(tmp) / "run"))
        rec = Recorder()
        result = run_training(spec, callbacks=[rec])
    steps = [
        {
            "step": m.step,
            "loss": m.loss,
            "tokens": m.tokens,
            "busy_s": m.tokens / m.tokens_per_s if m.tokens_per_s else 0,
        }
        for m in rec.metrics
    ]
    logs = [e.line for e in rec.events if isinstance(e, LogEvent) and e.line.startswith("SFT path")]
    peak, kind = _peak_mb(rec.cuda_peak_mb)
    return {
        "steps": steps,
        "peak_mb": peak,
        "peak_kind": kind,
        "setup": {
            "device": result.device,
            "gradient_checkpointing": result.metrics.get("gradient_checkpointing"),
            "sft_path": logs[-1] if logs else None,
        },
    }


def worker_trl(args: argparse.Namespace) -> dict[str, Any]:
    """One run of TRL's ``SFTTrainer`` configured for speed (see the module docstring)."""
    import importlib.util

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    fp16 = cuda and not bf16
    dtype = torch.bfloat16 if bf16 else torch.float16 if fp16 else torch.float32
    liger = cuda and importlib.util.find_spec("liger_kernel") is not None
    flash = cuda and importlib.util.find_spec("flash_attn") is not None
    attn = "flash_attention_2" if flash else "sdpa"
    model_init_kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attn}
    if args.case == "qlora":
        from transformers import BitsAndBytesConfig

        model_init_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_quant_storage=dtype,
        )
        model_init_kwargs["device_map"] = {"": 0}

    tokenizer = AutoTokenizer.from_pretrained(args.model_path)
    dataset = Dataset.from_list(_prompt_completion_rows(args.rows))
    config = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-trl-"),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        max_length=None,  # padding_free without packing refuses a max_length (TRL 1.16); see the module docstring
        padding_free=True,
        gradient_checkpointing=False,
        bf16=bf16,
        fp16=fp16,
        use_liger_kernel=liger,
        model_init_kwargs=model_init_kwargs,
        learning_rate=args.lr,
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=SEED,
        use_cpu=not cuda,
    )
    peft_config = LoraConfig(
        r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM"
    )
    trainer = SFTTrainer(
        model=args.model_path,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    timer = attach_step_timer(trainer)  # padding-free rows have no attention mask: every input id is a real token
    trainer.train()
    shutil.rmtree(config.output_dir, ignore_errors=True)
    peak, kind = _peak_mb(timer.cuda_peak_mb)
    return {
        "steps": timer.steps,
        "peak_mb": peak,
        "peak_kind": kind,
        "setup": {
            "dtype": str(dtype).removeprefix("torch."),
            "bf16": config.bf16,
            "fp16": config.fp16,
            "padding_free": config.padding_free,
            "gradient_checkpointing": config.gradient_checkpointing,
            "use_liger_kernel": config.use_liger_kernel,
            "attn_implementation": attn,
        },
    }


# --- the parent ------------------------------------------------------------------------------------------------------


def make_tiny_model(folder: Path) -> str:
    """A random 2-layer Llama (hidden 64) with the embedded model's tokenizer and vocabulary, saved in ``folder``."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    from training.engine.embedded import embedded_model_path

    hf_logging.disable_progress_bar()

    source = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(source)
    ref = AutoConfig.from_pretrained(source)
    config = LlamaConfig(
        vocab_size=ref.vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=ref.bos_token_id,
        eos_token_id=ref.eos_token_id,
        pad_token_id=getattr(ref, "pad_token_id", None),
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _env(gpus: int | None) -> dict[str, str]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    if gpus is not None:  # a single-process run sees one GPU (HF Trainer would wrap several in DataParallel)
        env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(gpus)))).split(",")[0]
    return env


def _worker(name: str, case: str, args: argparse.Namespace, gpus: int) -> dict[str, Any]:
    """Run one worker (ours/trl) for one case in its own process; its RESULT line."""
    argv = ["--case", case, "--model-path", args.model_path, "--steps", str(args.steps)]
    argv += ["--batch-size", str(args.batch_size), "--max-length", str(args.max_length), "--rows", str(args.rows)]
    env = _env(gpus if gpus > 0 else None)
    return run_worker(__file__, name, [*argv, "--lr", str(args.lr)], env=env, timeout=WORKER_TIMEOUT_S)


def run_scaling(args: argparse.Namespace, nproc: int) -> dict[str, Any]:
    """Ours on ``nproc`` processes through the CLI launcher (torchrun); per-step global tokens from rank 0's metric
    lines (the engine sums every rank's tokens)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in _rows(args.steps * args.batch_size * nproc)))
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps(_spec_dict(args, "lora", data, Path(tmp) / "run", nproc=nproc)))
        cmd = [sys.executable, "-m", "training.engine.cli", str(spec), "--nproc", str(nproc)]
        env = _env(None)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=WORKER_TIMEOUT_S)
    if proc.returncode != 0:
        raise SystemExit(f"scaling run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    steps = [
        {
            "step": e["step"],
            "loss": e["loss"],
            "tokens": e["tokens"],
            "busy_s": e["tokens"] / e["tokens_per_s"] if e["tokens_per_s"] else 0.0,
        }
        for e in events
        if e.get("type") == "metric"
    ]
    return {"steps": steps}


def _summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Tokens/s over the timed steps (step 1, the warm-up, excluded), the loss per step and the peak memory."""
    out = summarize(raw)
    out.pop("peak_rss_mb", None)
    return {
        **out,
        "busy_s": round(out["busy_s"], 4),
        **{k: raw[k] for k in ("peak_mb", "peak_kind", "setup") if k in raw},
    }


def _count_long_rows(model_path: str, n: int, max_length: int) -> int:
    """Rows whose chat-formatted length exceeds ``max_length`` (ours cuts them, TRL's padding-free run does not)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if not tokenizer.chat_template:
        return 0
    long = 0
    for r in _rows(n):
        ids = tokenizer.apply_chat_template(r["messages"], tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        long += len(ids) > max_length
    return long


def _gb(mb: float) -> str:
    return f"{mb / 1024:.2f} GB"


def _losses(values: list[float | None]) -> str:
    return " ".join(f"{x:.3f}" if x is not None else "-" for x in values)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="a local HF model folder (default: the embedded SmolLM2-135M)")
    p.add_argument("--tiny", action="store_true", help="a tiny random Llama (forced without CUDA)")
    p.add_argument("--cases", default="lora,qlora", help="comma-separated: lora, qlora")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=None, help="per-device batch (default: 8; 4 with --tiny)")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--rows", type=int, default=0, help="rows of data (default: steps x batch size, one epoch)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--nproc", type=int, default=None, help="processes for the scaling run (0: none)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--worker", choices=["ours", "trl"], help=argparse.SUPPRESS)
    p.add_argument("--case", choices=["lora", "qlora"], default="lora", help=argparse.SUPPRESS)
    p.add_argument("--model-path", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        fn = worker_ours if args.worker == "ours" else worker_trl
        print("RESULT " + json.dumps(fn(args)), flush=True)
        return

    import torch

    cuda = torch.cuda.is_available()
    gpus = torch.cuda.device_count() if cuda else 0
    if not cuda and not args.tiny:
        print("no CUDA device: --tiny forced (a random 2-layer Llama; the figures only prove that the paths run)")
        args.tiny = True
    if args.batch_size is None:
        args.batch_size = 4 if args.tiny else 8
    if args.rows <= 0:  # one epoch: both sides see the same rows once
        args.rows = args.steps * args.batch_size
    tmp = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    try:
        if args.tiny:
            args.model_path = make_tiny_model(tmp / "tiny-llama")
            model_name = "tiny random Llama (2 layers, hidden 64, SmolLM2 vocab)"
        elif args.model:
            args.model_path = str(Path(args.model).resolve())
            model_name = args.model_path
        else:
            from training.engine.embedded import embedded_model_path

            args.model_path = str(embedded_model_path())
            model_name = f"embedded SmolLM2-135M-Instruct ({args.model_path}); pass --model for a 0.5-1.5B model"
        nproc = args.nproc if args.nproc is not None else (gpus if gpus > 1 else (0 if cuda else 2))
        device = torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores)"
        print(
            f"bench/gpu_throughput.py: {device}, {gpus} GPU(s); model: {model_name}; {args.steps} steps, batch "
            f"{args.batch_size}, max_length {args.max_length}, lr {args.lr}"
        )
        long = _count_long_rows(args.model_path, args.rows, args.max_length)
        print(f"rows longer than max_length {args.max_length}: {long} of {args.rows} (ours truncates them, TRL not)")
        report: dict[str, Any] = {
            "device": device,
            "gpus": gpus,
            "model": model_name,
            "tiny": args.tiny,
            "args": {k: v for k, v in vars(args).items() if k not in ("worker", "case", "json")},
            "rows_longer_than_max_length": long,
            "cases": {},
        }
        for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
            if case == "qlora" and not cuda:
                print("qlora: skipped (needs CUDA)")
                report["cases"]["qlora"] = {"skipped": "needs CUDA"}
                continue
            if case == "qlora" and importlib_missing("bitsandbytes"):
                print("qlora: skipped (bitsandbytes is not installed)")
                report["cases"]["qlora"] = {"skipped": "bitsandbytes is not installed"}
                continue
            results = {}
            for name in ("ours", "trl"):
                t0 = time.perf_counter()
                results[name] = {**_summarize(_worker(name, case, args, gpus)), "wall_s": time.perf_counter() - t0}
            ours, trl = results["ours"], results["trl"]
            speedup = ours["tokens_per_s"] / trl["tokens_per_s"] if trl["tokens_per_s"] else math.inf
            mem = "peak VRAM" if cuda else "peak RSS"
            print(
                f"{case:5s} ours {ours['tokens_per_s']:.1f} tok/s  trl-best {trl['tokens_per_s']:.1f} tok/s  "
                f"{speedup:.2f}x  {mem} ours {_gb(ours['peak_mb'])} trl {_gb(trl['peak_mb'])}"
            )
            for name, r in results.items():
                print(
                    f"      {name:4s} loss: {_losses(r['losses'])}  ({r['tokens']} tokens in {r['busy_s']:.2f} s, steps "
                    f"2..{args.steps}; process wall {r['wall_s']:.0f} s)"
                )
                print(f"      {name:4s} setup: {json.dumps(r['setup'])}")
            report["cases"][case] = {"ours": ours, "trl-best": trl, "speedup": speedup}
        if nproc > 1:
            base = report["cases"].get("lora", {}).get("ours")
            if base is None:  # the one-process reference is the LoRA run
                base = _summarize(_worker("ours", "lora", args, gpus))
            t0 = time.perf_counter()
            multi = {**_summarize(run_scaling(args, nproc)), "wall_s": time.perf_counter() - t0}
            one = base["tokens_per_s"]
            efficiency = multi["tokens_per_s"] / (nproc * one) if one else 0.0
            caveat = (
                "" if cuda else f"  (CPU, {os.cpu_count()} cores shared: proves the path works, meaningless for speed)"
            )
            print(
                f"scale ours {nproc} procs {multi['tokens_per_s']:.1f} tok/s  1 proc {one:.1f} tok/s  "
                f"efficiency {efficiency * 100:.0f}%{caveat}"
            )
            print(f"      {nproc}p   loss: {_losses(multi['losses'])}  (process wall {multi['wall_s']:.0f} s)")
            report["scaling"] = {
                "nproc": nproc,
                "backend": "nccl" if cuda else "gloo",
                "tokens_per_s": multi["tokens_per_s"],
                "tokens_per_s_1": one,
                "efficiency": efficiency,
                "losses": multi["losses"],
                "meaningful": cuda,
            }
        else:
            print(f"scale skipped (nproc {nproc}: {gpus} GPU(s); --nproc N to run it)")
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def importlib_missing(name: str) -> bool:
    """True when the module ``name`` is not importable."""
    import importlib.util

    return importlib.util.find_spec(name) is None


if __name__ == "__main__":
    main()

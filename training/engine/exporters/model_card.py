"""Hugging Face model card (``README.md`` with YAML front matter) for an exported model, written with
``huggingface_hub``'s ``ModelCard`` / ``ModelCardData`` (the Hub's own metadata rules): ``base_model`` names the Hub
repository of the weights the run started from (with a note when those were not the original weights, e.g. the
embedded model dequantized from a GGUF), and ``model-index`` holds evaluation metrics only."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import ADAPTER_CONFIG

logger = logging.getLogger(__name__)

_ADAPTER_WEIGHTS = ("lora", "qlora", "adapter")


def _library_name(folder: Path, weights: str) -> str:
    if (folder / ADAPTER_CONFIG).exists():
        return "peft"
    if (folder / "config.json").exists():
        return "transformers"
    return "peft" if weights.lower() in _ADAPTER_WEIGHTS else "transformers"


def _numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[str(key)] = float(value)
    return out


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, list | tuple | Mapping):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(rows: Mapping[str, Any], header: tuple[str, str]) -> str:
    if not rows:
        return "_none recorded_\n"
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in rows.items()]
    return "\n".join(lines) + "\n"


def _base_link(base_model: str) -> str:
    parts = base_model.split("/")
    if len(parts) == 2 and all(parts) and not base_model.startswith((".", "~")):
        return f"[`{base_model}`](https://huggingface.co/{base_model})"
    return f"`{base_model}`"


def _usage(name: str, base_model: str, library: str, ggufs: list[str]) -> str:
    if library == "peft":
        transformers_snippet = f"""```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base = AutoModelForCausalLM.from_pretrained("{base_model}")
model = PeftModel.from_pretrained(base, "{name}")  # this folder or repo
tokenizer = AutoTokenizer.from_pretrained("{name}")
messages = [{{"role": "user", "content": "Hello!"}}]
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
print(tokenizer.decode(model.generate(**inputs, max_new_tokens=64)[0], skip_special_tokens=True))
```"""
    else:
        transformers_snippet = f"""```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("{name}")  # this folder or repo
tokenizer = AutoTokenizer.from_pretrained("{name}")
messages = [{{"role": "user", "content": "Hello!"}}]
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
print(tokenizer.decode(model.generate(**inputs, max_new_tokens=64)[0], skip_special_tokens=True))
```"""
    gguf = ggufs[0] if ggufs else "model-q8_0.gguf"
    return f"""### Transformers

{transformers_snippet}

### Ollama

With the GGUF export (`gguf-q8_0` or `gguf-f16`), whose chat template is embedded in the file:

```bash
echo "FROM ./{gguf}" > Modelfile
ollama create {name.lower()} -f Modelfile
ollama run {name.lower()} "Hello!"
```

### llama.cpp

```bash
llama-cli -m {gguf} -cnv -p "You are a helpful assistant."
```

```python
from llama_cpp import Llama

llm = Llama(model_path="{gguf}", n_ctx=2048)
print(llm.create_chat_completion(messages=[{{"role": "user", "content": "Hello!"}}])["choices"][0]["message"])
```
"""


def write_model_card(
    out_dir: str,
    *,
    base_model: str,
    datasets: Sequence[str],
    method: str,
    weights: str,
    hyperparameters: Mapping[str, Any],
    metrics: Mapping[str, Any],
    license: str = "apache-2.0",
    model_name: str | None = None,
    extra: Mapping[str, Any] | None = None,
    base_model_note: str | None = None,
    evaluation: Mapping[str, Any] | None = None,
) -> str:
    """Write ``out_dir/README.md`` (front matter + training/eval/usage sections); return its path.

    ``method`` is the training method (sft, dpo, orpo, kto), ``weights`` how weights were trained (lora, qlora,
    full). ``extra`` adds (or overrides) front-matter keys, e.g. ``{"language": ["en"]}``; its ``tags`` are appended.
    The evaluation metrics among ``metrics`` (``is_evaluation_metric``) also go into ``model-index`` so the Hub shows
    them; training figures (losses while training, throughput, memory) stay in the card's tables only.
    ``base_model_note`` says where the base weights really came from when they are not the repository's own.
    ``evaluation`` is the run's base vs fine-tuned comparison (``evaluation.compare_models``): its summary becomes a
    table, a few of its prompts are quoted, and the fine-tuned model's exact match and ROUGE-L join ``model-index``.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    name = model_name or folder.name
    library = _library_name(folder, weights)
    ggufs = sorted(p.name for p in folder.rglob("*.gguf"))
    extra = dict(extra or {})
    tags = _tags(method, weights, library, bool(ggufs), extra.pop("tags", []))
    dataset = str(datasets[0]) if datasets else "custom"
    evaluation_metrics = {k: v for k, v in _numeric(metrics).items() if is_evaluation_metric(k)}
    evaluation_metrics.update(_reference_metrics(evaluation))
    results = [
        EvalResult(
            task_type="text-generation",
            task_name="Text Generation",
            dataset_type=dataset,
            dataset_name=dataset,
            metric_type=key,
            metric_value=value,
            metric_name=key,
        )
        for key, value in evaluation_metrics.items()
    ]
    data = ModelCardData(
        base_model=base_model,
        datasets=[str(d) for d in datasets],
        license=license,
        library_name=library,
        pipeline_tag="text-generation",
        tags=tags,
        model_name=name,
        eval_results=results or None,
        **extra,
    )
    body = _body(
        name, base_model, datasets, method, weights, library, hyperparameters, metrics, ggufs, base_model_note
    )
    if evaluation:
        body = body.replace("## Usage\n", _evaluation_report(evaluation) + "## Usage\n", 1)
    path = folder / "README.md"
    tmp = folder / ".README.md.tmp"
    ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}").save(tmp)
    tmp.replace(path)
    logger.info("wrote model card %s", path)
    return str(path)


# Evaluation metrics (model-index) as the engine and the platform name them; anything else is a training figure.
_EVALUATION_PREFIXES = ("eval_", "perplexity", "exact_match", "rouge", "bleu", "accuracy")


def is_evaluation_metric(name: str) -> bool:
    """True for metrics measured on held-out data (eval loss, perplexity, exact match, ROUGE, ...)."""
    return str(name).lower().startswith(_EVALUATION_PREFIXES)


def _reference_metrics(evaluation: Mapping[str, Any] | None) -> dict[str, float]:
    """The fine-tuned model's exact match and ROUGE-L on the held-out prompts with a reference answer."""
    summary = (evaluation or {}).get("summary") or {}
    if not summary.get("references"):
        return {}
    out = {}
    for metric in ("exact_match", "rouge_l"):
        value = summary.get(f"finetuned_{metric}")
        if isinstance(value, int | float) and math.isfinite(float(value)):
            out[metric] = float(value)
    return out


_REPORT_ROWS = (
    ("loss (assistant tokens)", "base_loss", "finetuned_loss"),
    ("perplexity", "base_perplexity", "finetuned_perplexity"),
    ("exact match", "base_exact_match", "finetuned_exact_match"),
    ("ROUGE-L F1", "base_rouge_l", "finetuned_rouge_l"),
)
_QUOTED_PROMPTS = 3


def _evaluation_report(evaluation: Mapping[str, Any]) -> str:
    """Markdown: base vs fine-tuned on held-out prompts (summary table and a few answers side by side)."""
    summary = evaluation.get("summary") or {}
    lines = [
        "### Base vs fine-tuned on held-out prompts",
        "",
        f"{summary.get('prompts', 0)} held-out prompts answered greedily by both models"
        f" ({summary.get('references', 0)} with a reference answer).",
        "",
        "| metric | base | fine-tuned |",
        "|---|---|---|",
    ]
    for label, base_key, ft_key in _REPORT_ROWS:
        if summary.get(base_key) is not None or summary.get(ft_key) is not None:
            lines.append(f"| {label} | {_cell(summary.get(base_key))} | {_cell(summary.get(ft_key))} |")
    prompts = [p for p in evaluation.get("prompts") or [] if isinstance(p, Mapping)][:_QUOTED_PROMPTS]
    for i, row in enumerate(prompts, 1):
        asked = next(
            (m.get("content", "") for m in reversed(row.get("messages") or []) if m.get("role") == "user"), ""
        )
        lines += ["", f"**Prompt {i}:** {_cell(asked)}", ""]
        if row.get("reference"):
            lines.append(f"- reference: {_cell(row['reference'])}")
        lines += [f"- base: {_cell(row.get('base', ''))}", f"- fine-tuned: {_cell(row.get('finetuned', ''))}"]
    return "\n".join(lines) + "\n\n"


def _tags(method: str, weights: str, library: str, has_gguf: bool, extra_tags: Sequence[Any]) -> list[str]:
    """The Hub tags: finetune, method, weights, text-generation, the adapter kind, gguf, then ``extra_tags``."""
    tags = ["finetune", method, weights, "text-generation"]
    if library == "peft":
        tags.append("lora" if weights.lower() != "qlora" else "qlora")
    if has_gguf:
        tags.append("gguf")
    tags += [str(t) for t in extra_tags]
    return list(dict.fromkeys(t for t in tags if t))


def _body(
    name: str,
    base_model: str,
    datasets: Sequence[str],
    method: str,
    weights: str,
    library: str,
    hyperparameters: Mapping[str, Any],
    metrics: Mapping[str, Any],
    ggufs: list[str],
    base_model_note: str | None = None,
) -> str:
    """The card's Markdown: what the model is, how it was trained, its evaluation and how to use it."""
    dataset_list = ", ".join(f"`{d}`" for d in datasets) or "a private dataset"
    kind = "a LoRA adapter" if library == "peft" else "a full model"
    return f"""# {name}

This is {kind} fine-tuned from {_base_link(base_model)} with **{method.upper()}** ({weights} weights) on
{dataset_list}, trained with finetune (transformers + peft + trl).

## Training procedure

- Method: {method}
- Weights: {weights}
- Base model: `{base_model}`{f"; {base_model_note}" if base_model_note else ""}
- Datasets: {dataset_list}

### Hyperparameters

{_table(dict(hyperparameters), ("hyperparameter", "value"))}
## Evaluation

{_table(dict(metrics), ("metric", "value"))}
## Usage

{_usage(name, base_model, library, ggufs)}"""

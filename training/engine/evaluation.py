"""Evaluation: assistant-only loss / perplexity on chat examples, and a base vs fine-tuned comparison report."""

from __future__ import annotations

import functools
import logging
import math
import re
import string
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, DataError

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass(frozen=True)
class EvalResult:
    """Token-weighted mean assistant-token loss, its perplexity, and each example's own mean loss.

    ``per_example`` holds NaN for an example whose assistant tokens were all cut off by ``max_length``; such
    examples count in ``skipped`` and not in ``loss``.
    """

    loss: float
    perplexity: float
    per_example: list[float]
    n_tokens: int = 0
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN becomes None)."""
        return {
            "loss": _finite(self.loss),
            "perplexity": _finite(self.perplexity),
            "per_example": [_finite(x) for x in self.per_example],
            "n_tokens": self.n_tokens,
            "skipped": self.skipped,
        }


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


# --- encoding --------------------------------------------------------------------------------------------------------


def _messages_of(example: Mapping[str, Any] | Sequence[Any], index: int) -> list[dict[str, str]]:
    messages = example.get("messages") if isinstance(example, Mapping) else example
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise DataError(f"Example {index} has no 'messages' list.")
    out = []
    for turn in messages:
        if not isinstance(turn, Mapping) or not isinstance(turn.get("role"), str) or "content" not in turn:
            raise DataError(f"Example {index}: every message needs a 'role' and a 'content'.")
        out.append({"role": str(turn["role"]), "content": str(turn["content"])})
    return out


def _render(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    chat_template: str | None,
    generation: bool,
    tools: list[dict[str, Any]] | None = None,
) -> str:
    try:
        from .data import ChatRenderer
    except ImportError:  # pragma: no cover - the data package ships with the engine
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation, chat_template=chat_template, tools=tools
        )
        return str(text)
    # The same renderer as training: template names ("chatml"), Jinja strings, the no-template fallback, and the
    # fallback tool template for a tool-calling conversation whose template has no tool support.
    return ChatRenderer(tokenizer, chat_template).render(messages, add_generation_prompt=generation, tools=tools)


def _encode_fallback(
    tokenizer: Any, messages: list[dict[str, str]], *, max_length: int, chat_template: str | None, index: int
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) with labels only on assistant turns; used only if ``training.engine.data`` is missing."""
    full = _render(tokenizer, messages, chat_template, generation=False)
    spans: list[tuple[int, int]] = []
    for i, turn in enumerate(messages):
        if turn["role"] != "assistant":
            continue
        start = len(_render(tokenizer, messages[:i], chat_template, generation=True)) if i else 0
        end_text = _render(tokenizer, messages[: i + 1], chat_template, generation=False)
        if not full.startswith(end_text):
            raise DataError(f"Example {index}: the chat template does not render conversations prefix-consistently.")
        spans.append((start, len(end_text)))
    if not spans:
        raise DataError(f"Example {index} has no assistant message to score.")
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    for j, (a, b) in enumerate(enc["offset_mapping"]):
        if b > a and any(s <= a < e for s, e in spans):
            labels[j] = ids[j]
    return ids[:max_length], labels[:max_length]


def encode_conversation(
    tokenizer: Any, example: Mapping[str, Any], *, max_length: int, chat_template: str | None = None, index: int = 0
) -> tuple[list[int], list[int]]:
    """Tokenize one ``{"messages": [...]}`` example for an assistant-only loss: (input_ids, labels).

    Uses the trainer's own ``training.engine.data.tokenize_conversation`` so evaluation masks exactly as training does.
    """
    messages = _messages_of(example, index)
    if not any(turn["role"] == "assistant" for turn in messages):
        raise DataError(f"Example {index} has no assistant message to score.")
    try:
        from .data import tokenize_conversation
    except ImportError:  # pragma: no cover - the data package ships with the engine
        return _encode_fallback(tokenizer, messages, max_length=max_length, chat_template=chat_template, index=index)
    try:
        encoded = tokenize_conversation(tokenizer, messages, max_length=max_length, chat_template=chat_template)
    except DataError as exc:
        raise DataError(f"Example {index}: {exc}") from exc
    return list(encoded.input_ids), list(encoded.labels)


# --- loss ------------------------------------------------------------------------------------------------------------


def eval_loss(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Mapping[str, Any]],
    *,
    max_length: int,
    batch_size: int = 4,
    chat_template: str | None = None,
) -> EvalResult:
    """Mean cross-entropy over assistant tokens of chat examples (no gradients), and perplexity = exp(loss)."""
    import torch
    import torch.nn.functional as F

    if not examples:
        raise DataError("No evaluation examples.")
    if max_length < 2 or batch_size < 1:
        raise ConfigError("max_length must be >= 2 and batch_size >= 1.")
    encoded = [
        encode_conversation(tokenizer, ex, max_length=max_length, chat_template=chat_template, index=i)
        for i, ex in enumerate(examples)
    ]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    per_example: list[float] = []
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for start in range(0, len(encoded), batch_size):
                batch = encoded[start : start + batch_size]
                width = max(len(ids) for ids, _ in batch)
                input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, (ids, labs) in enumerate(batch):
                    input_ids[row, : len(ids)] = torch.tensor(ids)
                    labels[row, : len(labs)] = torch.tensor(labs)
                    mask[row, : len(ids)] = 1
                logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
                shift_logits = logits[:, :-1, :].float()
                shift_labels = labels[:, 1:].to(device)
                losses = F.cross_entropy(
                    shift_logits.transpose(1, 2), shift_labels, ignore_index=IGNORE_INDEX, reduction="none"
                )
                scored = (shift_labels != IGNORE_INDEX).sum(dim=1)
                sums = losses.sum(dim=1)
                for row in range(len(batch)):
                    n = int(scored[row])
                    per_example.append(float(sums[row]) / n if n else float("nan"))
                    total += float(sums[row])
                    count += n
    finally:
        model.train(was_training)
    if count == 0:
        raise DataError(f"No assistant tokens left to score within max_length={max_length}.")
    loss = total / count
    skipped = sum(1 for x in per_example if math.isnan(x))
    return EvalResult(
        loss=loss, perplexity=math.exp(min(loss, 700.0)), per_example=per_example, n_tokens=count, skipped=skipped
    )


# --- answer scores ---------------------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no English articles, single spaces."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION))
    return " ".join(text.split())


@functools.lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def answer_scores(prediction: str, reference: str) -> dict[str, float]:
    """One answer against its reference: ``exact_match`` (1.0 or 0.0, after :func:`normalize_answer`) and
    ``rouge_l`` (ROUGE-L F1 from Google's ``rouge-score``, Porter-stemmed).

    ``rouge-score`` tokenizes on ASCII letters and digits only, so text in other scripts scores 0 there; exact match
    still applies to it.
    """
    exact = float(normalize_answer(prediction) == normalize_answer(reference))
    rouge = float(_rouge_scorer().score(reference, prediction)["rougeL"].fmeasure)
    return {"exact_match": exact, "rouge_l": round(rouge, 4)}


def _reference_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean exact match and ROUGE-L of base and fine-tuned answers over the rows that have a reference answer."""
    scored = [r for r in rows if r.get("base_scores") and r.get("finetuned_scores")]
    if not scored:
        return {"references": 0}
    out: dict[str, Any] = {"references": len(scored)}
    for side in ("base", "finetuned"):
        for metric in ("exact_match", "rouge_l"):
            out[f"{side}_{metric}"] = round(sum(r[f"{side}_scores"][metric] for r in scored) / len(scored), 4)
    return out


# --- comparison ------------------------------------------------------------------------------------------------------


Prompt = tuple[list[dict[str, Any]], str | None, list[dict[str, Any]] | None]


def _prompt_of(item: Any, index: int) -> Prompt:
    """(messages up to the answer, reference answer if the item ends with an assistant turn, the item's tools).

    A tool-calling conversation (a canonical row with ``tools``, assistant ``tool_calls``, ``tool`` turns) keeps its
    calls and tool results, is answered with its tools offered, and a reference turn that calls tools is shown as
    the ``<tool_call>`` blocks the model is trained to write."""
    if isinstance(item, str):
        return [{"role": "user", "content": item}], None, None
    if isinstance(item, Mapping) and "messages" not in item and isinstance(item.get("prompt"), str):
        reference = item.get("completion") or item.get("response")
        return [{"role": "user", "content": item["prompt"]}], str(reference) if reference else None, None
    from .data.templates import uses_tools

    messages: list[dict[str, Any]] = list(_messages_of(item, index))
    tools = list(item.get("tools") or []) or None if isinstance(item, Mapping) else None
    raw = item["messages"] if isinstance(item, Mapping) else item
    if uses_tools(raw, tools):  # keep the calls and the tool turns' fields that _messages_of leaves out
        for turn, message in zip(raw, messages, strict=True):
            message.update({k: turn[k] for k in ("tool_calls", "name", "tool_call_id") if turn.get(k)})
    if messages[-1]["role"] == "assistant":
        return messages[:-1], _answer_text(messages[-1]), tools
    return messages, None, tools


def _answer_text(turn: Mapping[str, Any]) -> str:
    """An assistant turn as the model writes it: its text, then each call as a ``<tool_call>`` block (the format of
    ``data.templates.TOOL_FALLBACK_TEMPLATE`` and of Qwen/Hermes templates)."""
    import json

    parts = [str(turn.get("content") or "")] if turn.get("content") else []
    for call in turn.get("tool_calls") or []:
        fn = call.get("function", call)
        body = json.dumps({"name": fn.get("name"), "arguments": fn.get("arguments", {})}, ensure_ascii=False)
        parts.append(f"<tool_call>\n{body}\n</tool_call>")
    return "\n".join(parts)


def _generate(
    model: Any,
    tokenizer: Any,
    messages: list[dict[str, Any]],
    max_new_tokens: int,
    tools: list[dict[str, Any]] | None = None,
) -> str:
    import torch

    text = _render(tokenizer, messages, None, generation=True, tools=tools)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([ids], device=next(model.parameters()).device),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=next(model.parameters()).device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=pad,
        )
    return str(tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)).strip()


def _has_tokenizer(folder: str) -> bool:
    return (Path(folder) / "tokenizer.json").exists() or (Path(folder) / "tokenizer_config.json").exists()


def compare_models(
    base_model_path: str,
    finetuned_dir: str,
    prompts: Sequence[list[dict[str, Any]] | dict[str, Any]],
    *,
    max_new_tokens: int = 64,
    eval_examples: Sequence[Mapping[str, Any]] | None = None,
    max_length: int = 512,
) -> dict[str, Any]:
    """Side-by-side greedy answers of base and fine-tuned models, plus per-example losses; JSON-safe dict.

    ``finetuned_dir`` is a PEFT adapter (loaded on top of the base) or a full model folder. A prompt whose messages end
    with an assistant turn uses that turn as the reference answer shown next to both generations.
    """
    from .embedded import resolve_model_path
    from .exporters.base import is_adapter_dir

    if not Path(finetuned_dir).is_dir():
        raise ConfigError(f"Fine-tuned model folder {finetuned_dir} does not exist.")
    started = time.perf_counter()
    parsed = [_prompt_of(p, i) for i, p in enumerate(prompts)]
    base_path = resolve_model_path(base_model_path)
    adapter = is_adapter_dir(finetuned_dir)

    def answer(model: Any, tokenizer: Any) -> tuple[list[str], EvalResult | None]:
        answers = [_generate(model, tokenizer, messages, max_new_tokens, tools) for messages, _, tools in parsed]
        result = eval_loss(model, tokenizer, eval_examples, max_length=max_length) if eval_examples else None
        return answers, result

    base_tok = _tokenizer(base_path)
    model = _load_model(base_path)
    base_answers, base_eval = answer(model, base_tok)
    logger.info("compare_models: base %s done in %.1f s", base_path, time.perf_counter() - started)
    ft_tok = _tokenizer(finetuned_dir) if _has_tokenizer(finetuned_dir) else base_tok
    if adapter:
        model = _with_adapter(model, ft_tok, finetuned_dir)
    else:
        del model  # free the base before the fine-tuned copy loads
        model = _load_model(finetuned_dir)
    ft_answers, ft_eval = answer(model, ft_tok)
    del model

    rows = [
        {
            "messages": messages,
            **({"tools": tools} if tools else {}),
            "reference": reference,
            "base": base_answer,
            "finetuned": ft_answer,
            "changed": base_answer != ft_answer,
            "base_scores": answer_scores(base_answer, reference) if reference else None,
            "finetuned_scores": answer_scores(ft_answer, reference) if reference else None,
        }
        for (messages, reference, tools), base_answer, ft_answer in zip(parsed, base_answers, ft_answers, strict=True)
    ]
    summary: dict[str, Any] = {"prompts": len(rows), "prompts_changed": sum(r["changed"] for r in rows)}
    summary.update(_reference_summary(rows))
    evaluation = None
    if base_eval is not None and ft_eval is not None:
        evaluation = _compare_losses(base_eval, ft_eval, max_length)
        summary.update(_loss_summary(base_eval, ft_eval, evaluation["per_example"]))
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return {
        "base_model": base_model_path,
        "finetuned": str(finetuned_dir),
        "finetuned_kind": "adapter" if adapter else "full",
        "generation": {"max_new_tokens": max_new_tokens, "greedy": True},
        "prompts": rows,
        "eval": evaluation,
        "summary": summary,
    }


def _tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _load_model(path: str) -> Any:
    """A model in fp32, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _with_adapter(base: Any, tokenizer: Any, adapter_dir: str) -> Any:
    """``base`` with the adapter on top (embeddings grown first if the adapter's tokenizer added tokens)."""
    from peft import PeftModel

    if len(tokenizer) > base.get_input_embeddings().weight.shape[0]:
        base.resize_token_embeddings(len(tokenizer))
    return PeftModel.from_pretrained(base, adapter_dir).eval()


def _compare_losses(base_eval: EvalResult, ft_eval: EvalResult, max_length: int) -> dict[str, Any]:
    """The ``eval`` block: both results and each example's loss change."""
    per_example = []
    for i, (b, f) in enumerate(zip(base_eval.per_example, ft_eval.per_example, strict=True)):
        delta = f - b if math.isfinite(b) and math.isfinite(f) else float("nan")
        per_example.append(
            {"index": i, "base_loss": _finite(b), "finetuned_loss": _finite(f), "delta": _finite(delta)}
        )
    return {
        "examples": len(per_example),
        "max_length": max_length,
        "base": base_eval.to_dict(),
        "finetuned": ft_eval.to_dict(),
        "per_example": per_example,
    }


def _loss_summary(base_eval: EvalResult, ft_eval: EvalResult, per_example: list[dict[str, Any]]) -> dict[str, Any]:
    """Loss and perplexity before/after, their change and how many examples improved."""
    return {
        "base_loss": _finite(base_eval.loss),
        "finetuned_loss": _finite(ft_eval.loss),
        "base_perplexity": _finite(base_eval.perplexity),
        "finetuned_perplexity": _finite(ft_eval.perplexity),
        "loss_delta": _finite(ft_eval.loss - base_eval.loss),
        "examples_improved": sum(1 for row in per_example if row["delta"] is not None and row["delta"] < 0),
    }

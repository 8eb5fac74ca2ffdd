"""Evaluation on the real embedded SmolLM2: assistant-only loss, perplexity, base vs fine-tuned comparison."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from training.engine.errors import DataError
from training.engine.evaluation import (
    EvalResult,
    answer_scores,
    compare_models,
    encode_conversation,
    eval_loss,
    normalize_answer,
)

DATASETS = Path(os.environ.get("FINETUNE_DATASETS_DIR", Path(__file__).resolve().parents[3] / "shared" / "datasets"))
ALPACA = DATASETS / "alpaca_en_demo.json"
MAX_LENGTH = 128


def _chat_examples(n: int, offset: int = 0) -> list[dict]:
    if not ALPACA.exists():
        pytest.skip(f"shared dataset {ALPACA} is not available")
    rows = json.loads(ALPACA.read_text(encoding="utf-8"))
    picked = [r for r in rows if not r["input"] and 40 < len(r["output"]) < 160][offset : offset + n]
    return [
        {"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]}
        for r in picked
    ]


@pytest.fixture(scope="module")
def base():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.engine.embedded import embedded_model_path

    path = embedded_model_path()
    return (
        path,
        AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(),
        AutoTokenizer.from_pretrained(path),
    )


@pytest.fixture(scope="module")
def adapter_dir(base, tmp_path_factory):
    """A LoRA adapter trained for a few real AdamW steps on four alpaca chat rows."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path, _, tokenizer = base
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    )
    encoded = [encode_conversation(tokenizer, ex, max_length=MAX_LENGTH) for ex in _chat_examples(4)]
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((4, width), tokenizer.pad_token_id)
    labels = torch.full((4, width), -100)
    mask = torch.zeros((4, width), dtype=torch.long)
    for i, (ids, labs) in enumerate(encoded):
        input_ids[i, : len(ids)], labels[i, : len(labs)], mask[i, : len(ids)] = (
            torch.tensor(ids),
            torch.tensor(labs),
            1,
        )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(8):
        model(input_ids=input_ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    out = tmp_path_factory.mktemp("eval-adapter")
    model.save_pretrained(str(out))
    return str(out)


def test_it_scores_only_assistant_tokens(base):
    _, _, tokenizer = base
    example = _chat_examples(1)[0]
    ids, labels = encode_conversation(tokenizer, example, max_length=512)
    scored = tokenizer.decode([t for t, lab in zip(ids, labels) if lab != -100])
    # The answer and its end-of-turn marker, nothing of the system/user turns (same masking as training).
    assert scored.rstrip("\n") == example["messages"][1]["content"] + "<|im_end|>"
    assert len(ids) == len(labels)


def test_eval_loss_is_finite_and_perplexity_is_its_exponential(base):
    _, model, tokenizer = base
    result = eval_loss(model, tokenizer, _chat_examples(5), max_length=MAX_LENGTH, batch_size=2)
    assert isinstance(result, EvalResult)
    assert math.isfinite(result.loss) and 0 < result.loss < 10
    assert result.perplexity == pytest.approx(math.exp(result.loss))
    assert len(result.per_example) == 5 and all(math.isfinite(x) for x in result.per_example)
    assert result.n_tokens > 50 and result.skipped == 0
    # Batching and padding do not change the numbers.
    alone = eval_loss(model, tokenizer, _chat_examples(5), max_length=MAX_LENGTH, batch_size=1)
    assert alone.per_example == pytest.approx(result.per_example, abs=1e-4)
    assert json.loads(json.dumps(result.to_dict()))["loss"] == pytest.approx(result.loss)


def test_eval_loss_rejects_examples_without_an_assistant_turn(base):
    _, model, tokenizer = base
    with pytest.raises(DataError, match="no assistant message"):
        eval_loss(model, tokenizer, [{"messages": [{"role": "user", "content": "hi"}]}], max_length=64)
    with pytest.raises(DataError, match="no 'messages'"):
        eval_loss(model, tokenizer, [{"text": "hi"}], max_length=64)


def test_compare_models_shows_both_answers_and_the_adapter_lowers_training_loss(base, adapter_dir):
    path, _, _ = base
    train = _chat_examples(4)
    prompts = [train[0], [{"role": "user", "content": "What is the capital of France?"}]]
    report = compare_models(path, adapter_dir, prompts, max_new_tokens=16, eval_examples=train, max_length=MAX_LENGTH)
    assert json.loads(json.dumps(report)) == report
    assert report["finetuned_kind"] == "adapter" and len(report["prompts"]) == 2
    first = report["prompts"][0]
    assert first["reference"] == train[0]["messages"][1]["content"]
    assert first["messages"] == train[0]["messages"][:1]
    assert first["base"] and first["finetuned"] and first["base"] != first["finetuned"]
    assert report["prompts"][1]["reference"] is None and report["prompts"][1]["base"]
    per_example = report["eval"]["per_example"]
    assert len(per_example) == 4 and all(r["base_loss"] and r["finetuned_loss"] for r in per_example)
    summary = report["summary"]
    assert summary["finetuned_loss"] < summary["base_loss"]
    assert summary["finetuned_perplexity"] == pytest.approx(math.exp(summary["finetuned_loss"]))
    assert summary["examples_improved"] == 4 and summary["prompts_changed"] >= 1
    # Exact match and ROUGE-L only where there is a reference answer (the first prompt).
    assert report["prompts"][1]["base_scores"] is None and report["prompts"][1]["finetuned_scores"] is None
    for side in ("base", "finetuned"):
        scores = first[f"{side}_scores"]
        assert scores == answer_scores(first[side], first["reference"]) and 0 <= scores["rouge_l"] <= 1
        assert (
            summary[f"{side}_rouge_l"] == scores["rouge_l"] and summary[f"{side}_exact_match"] == scores["exact_match"]
        )
    assert summary["references"] == 1


def test_compare_models_accepts_a_full_model_folder_and_offers_a_rows_tools(base, monkeypatch):
    from training.engine.data import ChatRenderer
    from training.engine.data.tool_formats import messages_tools
    from training.engine.run import _prompts_for_comparison

    path, _, _ = base
    line = (Path(__file__).resolve().parents[1] / "data" / "tool_calling_messages.jsonl").read_text().splitlines()[0]
    row = messages_tools(json.loads(line), None)  # the canonical row training and evaluation see
    row["messages"] = row["messages"][:2]  # the question, then the reference answer: a call of get_weather
    (tool_prompt,) = _prompts_for_comparison([row], 1)
    assert tool_prompt["tools"] == row["tools"]
    offered = []
    render = ChatRenderer.render

    def spy(self, messages, *, add_generation_prompt=False, tools=None):
        text = render(self, messages, add_generation_prompt=add_generation_prompt, tools=tools)
        if add_generation_prompt and tools:
            offered.append(text)
        return text

    monkeypatch.setattr(ChatRenderer, "render", spy)
    report = compare_models(path, path, ["Say hello.", tool_prompt], max_new_tokens=8)
    assert report["finetuned_kind"] == "full" and report["eval"] is None
    assert report["prompts"][0]["base"] == report["prompts"][0]["finetuned"]
    assert report["summary"]["prompts_changed"] == 0
    # The tool row: both models were asked with its tools listed, and its reference is the call as models write it.
    tool_row = report["prompts"][1]
    assert tool_row["tools"] == row["tools"] and tool_row["messages"] == row["messages"][:1]
    assert len(set(offered)) == 1 and "<tools>" in offered[0] and '"get_weather"' in offered[0]  # both models
    assert (
        tool_row["reference"] == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    )


def test_answer_scores_exact_match_after_normalisation_and_rouge_l():
    assert normalize_answer("  The Capital is PARIS! ") == "capital is paris"
    assert answer_scores("Paris.", "paris") == {"exact_match": 1.0, "rouge_l": 1.0}
    partial = answer_scores("The capital of France is Paris", "Paris is the capital")
    assert partial["exact_match"] == 0.0 and 0.3 < partial["rouge_l"] < 1.0
    # ROUGE-L is an LCS F1 with stemming: word order matters, inflections do not.
    assert answer_scores("cats running fast", "cat runs fast")["rouge_l"] == 1.0
    assert answer_scores("completely unrelated words", "Paris is the capital")["rouge_l"] == 0.0

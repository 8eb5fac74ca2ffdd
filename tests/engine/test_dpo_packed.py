"""The packed CPU preference paths (``trainers/dpo_packed.py``, ``trainers/orpo_packed.py``): the fused linear +
log-softmax gather equals the plain computation (values and gradients), the padding-free forward gives the same
per-token and per-sequence log-probs (and LoRA gradients) as TRL's own fused-head forward on the padded batch, the
packed ORPO forward gives what TRL's ORPO forward gives, packed KTO's loss is stock KTO's, and each path is chosen
where it applies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from training.engine import ListCallback, run_training
from training.engine.trainers import dpo_packed
from training.engine.trainers.dpo_packed import (
    linear_logprobs,
    packed_token_logprobs,
    precompute_pays,
    select_dpo_path,
)
from training.engine.trainers.orpo_packed import packed_orpo_forward, select_orpo_path


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])  # fp32: vocabulary-major chunks; bf16: row-major
def test_linear_logprobs_matches_log_softmax_gather(monkeypatch: pytest.MonkeyPatch, dtype: str) -> None:
    import torch

    from training.engine.trainers import losses

    torch.manual_seed(0)
    rows, dim, vocab = 37, 16, 1000
    monkeypatch.setattr(dpo_packed, "_CHUNK_ELEMENTS", 16 * vocab)  # 16-row chunks: 3 chunks, a partial last one
    monkeypatch.setattr(losses, "VOCAB_MAJOR_ROWS", 16)
    if dtype == "bfloat16":  # the bf16 path against the fp32 computation: bf16 rounding of logits and gradients
        h16 = torch.randn(rows, dim).bfloat16().requires_grad_()
        w16 = torch.randn(vocab, dim).mul_(0.5).bfloat16().requires_grad_()
        t = torch.randint(0, vocab, (rows,))
        logp16, *_ = linear_logprobs(h16, w16, t, stats=True)
        logp16.sum().backward()
        hf, wf = h16.detach().float().requires_grad_(), w16.detach().float().requires_grad_()
        ref16 = torch.log_softmax(hf @ wf.t(), dim=-1).gather(1, t[:, None]).squeeze(1)
        ref16.sum().backward()
        torch.testing.assert_close(logp16, ref16, atol=0.1, rtol=0.02)
        torch.testing.assert_close(h16.grad.float(), hf.grad, atol=0.05, rtol=0.05)
        return
    hidden = torch.randn(rows, dim, dtype=torch.float64).float().requires_grad_()
    weight = torch.randn(vocab, dim).mul_(0.5).requires_grad_()
    targets = torch.randint(0, vocab, (rows,))
    upstream = torch.randn(rows)

    logp, entropy, mean_logits, is_top1 = linear_logprobs(hidden, weight, targets, stats=True)
    (logp * upstream).sum().backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None

    logits = hidden @ weight.t()
    log_softmax = torch.log_softmax(logits, dim=-1)
    ref = log_softmax.gather(1, targets[:, None]).squeeze(1)
    (ref * upstream).sum().backward()
    torch.testing.assert_close(logp, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[0], hidden.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grads[1], weight.grad, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        probs = log_softmax.exp()
        torch.testing.assert_close(entropy, -(probs * log_softmax).sum(-1), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(mean_logits, logits.mean(-1), atol=1e-5, rtol=1e-5)
        assert torch.equal(is_top1, logits.argmax(-1) == targets)
        # without gradients (evaluation, the reference pass) the same values come from the plain chunked loop
        again = linear_logprobs(hidden, weight, targets)[0]
    torch.testing.assert_close(again, logp)


def _small_lora_model(model_path: str) -> Any:
    """The embedded model cut to 4 of its 30 layers (the packing is checked just as well, in a fraction of the time),
    fp32, with a LoRA adapter whose B is random: the policy differs from the reference."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=torch.float32, attn_implementation="sdpa", num_hidden_layers=4
    )
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False)
    return get_peft_model(model, config)


def _record_packed_calls(
    monkeypatch: pytest.MonkeyPatch, what: Callable[[Any, Any], Any] = lambda _model, stats: stats
) -> list[Any]:
    """Every later ``packed_token_logprobs`` call, recorded as ``what(model, stats)`` (by default whether it computed
    TRL's logging statistics: the policy's passes do, the reference's do not)."""
    calls: list[Any] = []
    packed = dpo_packed.packed_token_logprobs

    def recorded(model: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(what(model, kwargs.get("stats")))
        return packed(model, *args, **kwargs)

    monkeypatch.setattr(dpo_packed, "packed_token_logprobs", recorded)
    return calls


# TRL config values of the trainer-level comparisons: fp32 on the CPU, one process, short rows
CPU_FP32 = {"report_to": [], "use_cpu": True, "bf16": False, "dataset_num_proc": None, "max_length": 128}


def _one_step(trainer: Any, model: Any, batch: dict[str, Any] | None, watched: list[Any]) -> tuple[Any, ...]:
    """A TRL trainer's training loss on ``batch`` (its dataloader's first when None) and its backward: the loss, the
    metrics it logged, the ``watched`` parameters' gradients and the batch."""
    batch = batch or next(iter(trainer.get_train_dataloader()))
    model.zero_grad()
    model.train()
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items() if v}
    return loss.detach(), metrics, [p.grad.clone() for p in watched], batch


def _preference_batch(tokenizer: Any, short_hh: Path, pairs: int) -> dict[str, Any]:
    """TRL's collated ``[2B, T]`` batch for the first ``pairs`` short HH-RLHF pairs, tokenized like TRL does."""
    from trl.data_utils import common_prefix_length
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from training.engine.data import load_examples

    def ids(messages: list[dict[str, str]], prompt: bool) -> list[int]:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    examples = []
    for ex in load_examples([short_hh]).examples[:pairs]:
        prompt = ids(ex["prompt"], True)
        chosen = ids(ex["prompt"] + ex["chosen"], False)
        rejected = ids(ex["prompt"] + ex["rejected"], False)
        n = min(common_prefix_length(prompt, chosen), common_prefix_length(prompt, rejected))
        examples.append({"prompt_ids": prompt[:n], "chosen_ids": chosen[n:], "rejected_ids": rejected[n:]})
    return DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)(examples)


def test_packed_logprobs_equal_trl_fused_head(model_path: str, short_hh: Path) -> None:
    """fp32 (a 4-layer cut of the model): the packed forward, which runs each pair's prompt once, gives per-token
    log-probs, per-sequence sums, TRL's logging statistics and LoRA gradients equal to those of TRL's
    ``fused_lm_head`` forward on the padded batch, with the adapter on (policy) and off (reference)."""
    import torch
    from transformers import AutoTokenizer
    from trl.trainer.utils import add_fused_lm_head, use_adapter

    from training.engine.trainers.packed_attention import register

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = _small_lora_model(model_path)
    add_fused_lm_head(model.get_base_model(), outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    model.get_base_model().set_attn_implementation(register())  # padded batches (with a mask) fall through to SDPA
    batch = _preference_batch(tokenizer, short_hh, pairs=3)
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    lora = [p for n, p in model.named_parameters() if "lora_" in n]

    stock = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels, fused_lm_head=True
    )
    stock.log_probs.sum().backward()
    stock_grads = [p.grad.clone() for p in lora]
    model.zero_grad()
    ours = packed_token_logprobs(model, batch["input_ids"], batch["attention_mask"], labels, stats=True)
    ours["log_probs"].sum().backward()

    mask = ours["label_mask"]
    assert torch.equal(mask, labels[:, 1:] != -100) and mask.sum() > 0
    # each pair's prompt went through the decoder once: the row is shorter than the batch's tokens by the prompts
    row, _, _ = dpo_packed._pair_layout(batch["input_ids"], batch["attention_mask"].bool())
    prompts = (batch["attention_mask"].bool() & (batch["completion_mask"] == 0))[:3].sum()
    assert len(row) <= int(batch["attention_mask"].sum() - prompts) and prompts > 0
    torch.testing.assert_close(ours["log_probs"], stock.log_probs, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(ours["log_probs"].sum(1), stock.log_probs.sum(1), atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(ours["entropy"], stock.entropy.detach(), atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(ours["mean_logits"], stock.mean_logits, atol=2e-4, rtol=1e-4)
    assert (ours["is_top1"] != stock.is_top1)[mask].sum() <= 1  # a near tie may flip one token
    for g_ours, g_stock in zip((p.grad for p in lora), stock_grads, strict=True):
        torch.testing.assert_close(g_ours, g_stock, atol=1e-4, rtol=1e-3)

    with torch.no_grad(), use_adapter(model, adapter_name=None):
        ref_stock = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels, fused_lm_head=True
        ).log_probs.sum(1)
        ref_ours = packed_token_logprobs(model, batch["input_ids"], batch["attention_mask"], labels)["log_probs"]
    torch.testing.assert_close(ref_ours.sum(1), ref_stock, atol=1e-3, rtol=1e-5)
    assert (ref_ours.sum(1) - ours["log_probs"].detach().sum(1)).abs().max() > 1e-2  # the adapter mattered


def _orpo_batch(tokenizer: Any, short_hh: Path, pairs: int) -> dict[str, Any]:
    """TRL's collated ORPO batch (``chosen_*``/``rejected_*``/``prompt_*``, right-padded, prompt labels -100) for the
    first ``pairs`` short HH-RLHF pairs, of differing lengths."""
    from trl.experimental.utils import DPODataCollatorWithPadding

    from training.engine.data import load_examples

    def ids(messages: list[dict[str, str]], prompt: bool) -> list[int]:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    rows = []
    for ex in load_examples([short_hh]).examples[:pairs]:
        prompt = ids(ex["prompt"], True)
        row: dict[str, Any] = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
        for side in ("chosen", "rejected"):
            answer = ids(ex["prompt"] + ex[side], False)[len(prompt) :]
            row[f"{side}_input_ids"] = prompt + answer
            row[f"{side}_attention_mask"] = [1] * (len(prompt) + len(answer))
            row[f"{side}_labels"] = [-100] * len(prompt) + answer
        rows.append(row)
    return DPODataCollatorWithPadding(pad_token_id=tokenizer.pad_token_id)(rows)


def test_packed_orpo_forward_equals_trl(model_path: str, short_hh: Path) -> None:
    """fp32 (a 4-layer cut of the model): the packed ORPO forward's chosen and rejected mean log-probs, chosen NLL and
    the LoRA gradients of the full ORPO loss equal those of TRL's ``ORPOTrainer.concatenated_forward`` on the padded
    batch."""
    from types import SimpleNamespace

    import torch
    from transformers import AutoTokenizer
    from trl.experimental.orpo import ORPOTrainer

    from training.engine.trainers.packed_attention import register

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = _small_lora_model(model_path)
    batch = _orpo_batch(tokenizer, short_hh, pairs=3)
    lengths = batch["chosen_attention_mask"].sum(1).tolist() + batch["rejected_attention_mask"].sum(1).tolist()
    assert len(set(lengths)) > 1  # padding is in play
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    trainer = SimpleNamespace(
        concatenated_inputs=ORPOTrainer.concatenated_inputs,
        get_batch_logps=ORPOTrainer.get_batch_logps,
        is_encoder_decoder=False,
        aux_loss_enabled=False,
        padding_value=tokenizer.pad_token_id,
        accelerator=SimpleNamespace(device=torch.device("cpu")),
    )

    def loss(out: tuple[Any, ...]) -> Any:  # ORPO's loss: chosen NLL - beta * log sigmoid(log odds)
        chosen, rejected, nll = out[0], out[1], out[4]
        log_odds = (chosen - rejected) - (torch.log1p(-chosen.exp()) - torch.log1p(-rejected.exp()))
        return nll - 0.1 * torch.nn.functional.logsigmoid(log_odds).mean()

    stock = ORPOTrainer.concatenated_forward(trainer, model, batch)  # type: ignore[arg-type]
    loss(stock).backward()
    stock_grads = [p.grad.clone() for p in lora]
    model.zero_grad()
    model.get_base_model().set_attn_implementation(register())
    ours = packed_orpo_forward(model, batch, padding_value=tokenizer.pad_token_id, autocast=None)
    loss(ours).backward()

    for i in (0, 1, 4):  # chosen mean log-probs, rejected mean log-probs, chosen NLL
        torch.testing.assert_close(ours[i], stock[i], atol=2e-5, rtol=1e-5)
    assert ours[2].numel() > 0 and ours[3].numel() > 0  # the logging stand-ins
    for g_ours, g_stock in zip((p.grad for p in lora), stock_grads, strict=True):
        torch.testing.assert_close(g_ours, g_stock, atol=1e-5, rtol=1e-3)


def test_packed_full_weight_dpo_equals_trl(
    model_path: str, short_hh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fp32 (a 4-layer cut of the model), full weights against TRL's frozen reference copy, the reference computed
    with the step: ``PackedDPOTrainer``'s loss, its reference (through the packed forward, on the copy) and the
    gradients of the trained weights (an attention projection and the tied embedding / LM head) equal stock
    ``DPOTrainer``'s."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from training.engine.data import load_examples
    from training.engine.trainers.packed_attention import register
    from training.engine.trainers.preference import preference_dataset

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=torch.float32, attn_implementation="sdpa", num_hidden_layers=4
    )
    reference = copy.deepcopy(model)
    with torch.no_grad():  # the policy has moved away from the reference
        for p in model.model.layers[1].parameters():
            p.add_(0.02 * torch.randn_like(p))
    pairs = preference_dataset(load_examples([short_hh]).examples[:3])
    args = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=3, **CPU_FP32)
    watched = [model.model.layers[0].self_attn.q_proj.weight, model.lm_head.weight]

    def loss_and_grads(cls: type, batch: dict[str, Any] | None) -> tuple[Any, dict[str, Any], list[Any], Any]:
        trainer = cls(model=model, ref_model=reference, args=args, train_dataset=pairs, processing_class=tokenizer)
        return _one_step(trainer, model, batch, watched)

    stock_loss, stock_metrics, stock_grads, batch = loss_and_grads(DPOTrainer, None)
    calls = _record_packed_calls(monkeypatch, lambda target, stats: (target is reference, stats))
    for m in (model, reference):
        m.set_attn_implementation(register())  # padded batches (with a mask) fall through to SDPA
    loss, metrics, grads, _ = loss_and_grads(dpo_packed.packed_dpo_trainer_class(DPOTrainer), batch)

    assert sorted(calls) == [(False, True), (True, False)]  # the policy, and the reference copy on the packed path
    torch.testing.assert_close(loss, stock_loss, atol=1e-5, rtol=1e-4)
    for g_ours, g_stock in zip(grads, stock_grads, strict=True):
        torch.testing.assert_close(g_ours, g_stock, atol=1e-5, rtol=1e-3)
    for key in ("rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"):
        assert metrics[key] == pytest.approx(stock_metrics[key], rel=1e-3, abs=1e-3), key
    assert abs(stock_metrics["rewards/chosen"]) > 1e-3  # the reference was not the policy


def test_packed_kto_loss_equals_trl(
    model_path: str, short_hh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fp32 (a 4-layer cut of the model): on the same collated KTO batch (desirable and undesirable rows, their KL
    rows), ``PackedKTOTrainer``'s loss, its reference computed with the step on the packed forward, and its LoRA
    gradients equal stock ``KTOTrainer``'s, and so do the logged KL, rewards and log-probs."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import KTOConfig, KTOTrainer

    from training.engine.data import load_examples
    from training.engine.trainers.kto_packed import packed_kto_trainer_class
    from training.engine.trainers.packed_attention import register

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = _small_lora_model(model_path)
    rows = []
    for ex in load_examples([short_hh]).examples[:2]:
        rows.append({"prompt": ex["prompt"], "completion": ex["chosen"], "label": True})
        rows.append({"prompt": ex["prompt"], "completion": ex["rejected"], "label": False})
    args = KTOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, remove_unused_columns=False, **CPU_FP32)
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    start = [p.detach().clone() for p in lora]
    moved = [0.05 * torch.randn_like(p) for p in lora]

    def loss_and_grads(cls: type, batch: dict[str, Any] | None) -> tuple[Any, dict[str, Any], list[Any], Any]:
        # TRL copies the adapter as it finds it into a "ref" adapter (the reference); the policy then moves from it
        if "ref" in model.peft_config:
            model.delete_adapter("ref")
        with torch.no_grad():
            for p, value in zip(lora, start, strict=True):
                p.copy_(value)
        trainer = cls(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
        with torch.no_grad():
            for p, step in zip(lora, moved, strict=True):
                p.add_(step)
        return _one_step(trainer, model, batch, lora)

    packed_calls = _record_packed_calls(monkeypatch)
    stock_loss, stock_metrics, stock_grads, batch = loss_and_grads(KTOTrainer, None)
    assert not packed_calls
    assert batch["label"].any() and not batch["label"].all() and "KL_input_ids" in batch
    model.get_base_model().set_attn_implementation(register())  # padded batches (with a mask) fall through to SDPA
    loss, metrics, grads, _ = loss_and_grads(packed_kto_trainer_class(KTOTrainer), batch)

    # the policy on the rows (with TRL's logging statistics) and on the KL rows (without); the reference on both in
    # one forward (each row's prompt once)
    assert sorted(packed_calls) == [False, False, True]
    torch.testing.assert_close(loss, stock_loss, atol=1e-5, rtol=1e-4)
    for g_ours, g_stock in zip(grads, stock_grads, strict=True):
        torch.testing.assert_close(g_ours, g_stock, atol=1e-5, rtol=1e-3)
    for key in ("kl", "logps/chosen", "logps/rejected", "rewards/chosen", "rewards/rejected", "entropy"):
        assert metrics[key] == pytest.approx(stock_metrics[key], rel=1e-3, abs=1e-3), key
    assert abs(stock_metrics["rewards/chosen"]) > 1e-3  # the adapter mattered: the reference was not the policy


def test_path_selection() -> None:
    common: dict[str, Any] = {"use_unsloth": False, "num_processes": 1, "supports_packed": True}
    assert select_dpo_path(device_type="cpu", weights="lora", loss_types=["sigmoid"], **common).packed
    assert select_dpo_path(device_type="cpu", weights="lora", loss_types=["ipo"], **common).packed
    assert select_dpo_path(device_type="cpu", weights="full", loss_types=["sigmoid"], **common).packed
    qlora = select_dpo_path(device_type="cpu", weights="qlora", loss_types=["sigmoid"], **common)
    assert not qlora.packed and qlora.describe() == "stock TRL DPOTrainer (qlora weights)"
    odd = select_dpo_path(device_type="cpu", weights="lora", loss_types=["a_future_loss"], **common)
    assert not odd.packed and "a_future_loss" in odd.reason
    assert not select_dpo_path(device_type="cuda", weights="lora", loss_types=["sigmoid"], **common).packed
    assert not select_dpo_path(device_type="cpu", weights="qlora", loss_types=["sigmoid"], **common).packed
    assert not select_dpo_path(
        device_type="cpu", weights="lora", loss_types=["sigmoid"], **{**common, "num_processes": 2}
    ).packed
    from training.engine.trainers.kto_packed import select_kto_path

    assert select_kto_path(device_type="cpu", weights="lora", loss_types=["kto"], **common).packed
    assert select_kto_path(device_type="cpu", weights="lora", loss_types=["apo_zero_unpaired"], **common).packed
    assert select_kto_path(device_type="cpu", weights="full", loss_types=["kto"], **common).packed
    qlora_kto = select_kto_path(device_type="cpu", weights="qlora", loss_types=["kto"], **common)
    assert not qlora_kto.packed and qlora_kto.describe() == "stock TRL KTOTrainer (qlora weights)"
    assert not select_kto_path(device_type="cuda", weights="lora", loss_types=["kto"], **common).packed
    assert not select_dpo_path(
        device_type="cpu", weights="lora", loss_types=["sigmoid"], **{**common, "supports_packed": False}
    ).packed
    # ORPO has no reference model: full weights take the packed path too
    assert select_orpo_path(device_type="cpu", weights="lora", **common).packed
    assert select_orpo_path(device_type="cpu", weights="full", **common).packed
    stock = select_orpo_path(device_type="cpu", weights="qlora", **common)
    assert not stock.packed and stock.describe() == "stock TRL ORPOTrainer (qlora weights)"
    assert not select_orpo_path(device_type="cuda", weights="lora", **common).packed
    assert not select_orpo_path(device_type="cpu", weights="lora", **{**common, "num_processes": 2}).packed


def test_cpu_lora_dpo_run_takes_the_packed_path(
    tmp_path: Path, make_spec: Any, short_hh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec(
        tmp_path / "run",
        short_hh,
        method="dpo",
        hyper={"max_steps": 2, "per_device_train_batch_size": 2, "max_length": 96, "beta": 0.1},
        data={"limit": 4},
    )
    events = ListCallback()
    result = run_training(spec, [events])
    assert result.status == "succeeded" and result.final_step == 2
    lines = [e.line for e in events.of_type("log")]
    assert any(line.startswith("DPO path: packed") for line in lines), lines
    assert any("reference log-probs precomputed: 4 pairs" in line for line in lines), lines
    assert all(m.loss is not None for m in events.metrics)
    assert any("rewards/margins" in k for k in events.metrics[-1].extra)

    # One step trains on 2 of the 4 pairs: the reference is computed with the step, not for all 4 up front, on the
    # packed forward too (TRL's own in-step reference runs the padded batch). In fp32 (bf16 rounds the no-grad
    # reference pass and the policy pass apart: 0.6999 measured) policy == reference at the first step gives
    # exactly ln 2.
    calls = _record_packed_calls(monkeypatch)
    spec = make_spec(
        tmp_path / "short",
        short_hh,
        method="dpo",
        hyper={"max_steps": 1, "per_device_train_batch_size": 2, "max_length": 96, "beta": 0.1, "precision": "fp32"},
        data={"limit": 4},
    )
    events = ListCallback()
    result = run_training(spec, [events])
    assert result.status == "succeeded" and result.final_step == 1
    lines = [e.line for e in events.of_type("log")]
    assert any("computed with each step (the run trains on 2 of 4 pairs)" in line for line in lines), lines
    assert events.metrics[0].loss == pytest.approx(0.6931, abs=1e-4)  # policy == reference: the reference is right
    assert sorted(calls) == [False, True]  # the step's packed reference (no statistics) and its policy


def test_the_reference_is_precomputed_only_when_the_run_covers_the_data() -> None:
    assert precompute_pays(max_steps=-1, rows_per_step=4, train_rows=1000)  # epochs
    assert precompute_pays(max_steps=250, rows_per_step=4, train_rows=1000)
    assert not precompute_pays(max_steps=10, rows_per_step=4, train_rows=1000)

"""Supervised fine-tuning on our own pre-tokenized rows (assistant-only labels from ``training.engine.data``).

The hot path (``PackedSFTTrainer``), chosen by measurement on a 2-core CPU:
- padding-free batches: the rows of a micro-batch are concatenated into one row with restarting ``position_ids``
  (transformers builds a block-diagonal causal mask from them), so no compute is spent on padding;
- logits only where a label is trained (``logits_to_keep`` as a boolean mask): the vocabulary projection and the
  cross-entropy skip every prompt token;
- no gradient checkpointing unless memory needs it, bf16 autocast only where the device computes bf16 natively.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Sequence
from typing import Any

from training.engine.data import IGNORE_INDEX, ChatRenderer, build_sft_dataset, pack_examples, tokenize_example
from training.engine.data.tokenize import UNLIMITED, kto_for_sft_message
from training.engine.errors import DataError

from .base import MethodTrainer
from .context import DataReport
from .hf_trainer import EngineTrainerMixin, common_args
from .kernels import SftPath, flash_attention_available, liger_available, select_sft_path
from .losses import FUSED_LOSS_MODEL_TYPES, linear_cross_entropy
from .registry import register

logger = logging.getLogger(__name__)


class TokenizedDataset:
    """A map-style dataset over ``TokenizedExample`` rows (``input_ids`` and ``labels`` lists)."""

    def __init__(self, rows: Sequence[Any]) -> None:
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        row = self.rows[index]
        return {"input_ids": row.input_ids, "labels": row.labels}


class LargestFirstSampler:
    """A seeded random order (one per epoch) whose first global batch is the one with the most tokens.

    The first step then reaches the run's peak memory: an out-of-memory shows at once rather than at step N, and the
    allocator's heap grows to its size once. Otherwise every step longer than all before it page-faults its new
    memory in: on 2 CPU cores that was 1.4 s of a 2.4 s step (174k faults) when step 5 of 10 was the longest.
    ``group`` is the global batch (micro-batch x ranks x accumulation), so one process and N ranks with the same
    global batch see the same rows in the same steps; a partial last batch stays last."""

    def __init__(self, lengths: Sequence[int], group: int, seed: int) -> None:
        self.lengths = list(lengths)
        self.group = max(1, group)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Any:
        import torch

        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        batches = [order[i : i + self.group] for i in range(0, len(order), self.group)]
        full = [i for i, b in enumerate(batches) if len(b) == self.group]
        if full:
            largest = max(full, key=lambda i: sum(self.lengths[j] for j in batches[i]))
            batches[0], batches[largest] = batches[largest], batches[0]
        return iter([j for b in batches for j in b])


class PaddingFreeCollator:
    """Concatenates a micro-batch into one row with per-sequence ``position_ids``; the first label of every
    sequence is masked so no token learns to predict the next sequence's start."""

    def __call__(self, features: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for f in features:
            n = len(f["input_ids"])
            ids.extend(f["input_ids"])
            row_labels = list(f["labels"])
            row_labels[0] = IGNORE_INDEX
            labels.extend(row_labels)
            positions.extend(range(n))
        return {
            "input_ids": torch.tensor([ids], dtype=torch.long),
            "position_ids": torch.tensor([positions], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
        }


class PaddedCollator:
    """Right-padded batches with an attention mask (for models without packed-sequence support)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            labels[i, :n] = torch.tensor(f["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _supports(model: Any, name: str) -> bool:
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return name in inspect.signature(target.forward).parameters
    except (TypeError, ValueError):
        return False


def _make_trainer_class() -> type:
    import torch
    import torch.nn.functional as F
    from transformers import Trainer

    class PackedSFTTrainer(EngineTrainerMixin, Trainer):
        """HF Trainer whose causal-LM loss only projects trained positions onto the vocabulary and is normalized
        over the whole accumulated batch. ``loss_mode``: ``fused`` (chunked linear+cross-entropy on the decoder's
        hidden states, see ``losses.py``), ``sparse`` (``logits_to_keep`` mask) or ``full`` (every logit)."""

        loss_is_scaled_for_ga = True
        loss_mode = "sparse"
        largest_first = False

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if not self.largest_first or not isinstance(dataset, TokenizedDataset):
                return super()._get_train_sampler(train_dataset)
            args = self.args
            group = args.per_device_train_batch_size * max(1, args.world_size) * args.gradient_accumulation_steps
            return LargestFirstSampler([len(r.input_ids) for r in dataset.rows], group, args.seed)

        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            target = labels[:, 1:]
            trained = target != IGNORE_INDEX
            targets = target[trained]
            if num_items_in_batch is not None and model.training:
                denom: Any = num_items_in_batch
            else:
                scale = self.current_gradient_accumulation_steps if model.training else 1
                denom = max(int(targets.numel()), 1) * scale
            if torch.is_tensor(denom):
                denom = float(denom)
            outputs: Any
            if self.loss_mode == "model":
                # Liger's (CUDA) or Unsloth's fused linear + cross-entropy: the model gets the labels (and the token
                # count of the accumulated batch) and never materialises the full logits.
                counted = num_items_in_batch is not None and model.training
                extra = {"num_items_in_batch": num_items_in_batch} if counted else {}
                outputs = model(**inputs, labels=labels, **extra)
                loss = outputs.loss
                if not counted and model.training:
                    loss = loss / self.current_gradient_accumulation_steps
                loss = _global_token_mean(self, loss, num_items_in_batch, model.training)
                return (loss, outputs) if return_outputs else loss
            if self.loss_mode == "fused":
                decoder, head = _fused_parts(model)
                # The decoder is called directly, outside the forward that accelerate wrapped in autocast, so
                # mixed precision is entered here (LoRA adapters then run in the compute dtype, see
                # ``adapter_inputs_uncast``).
                with self.accelerator.autocast():
                    outputs = decoder(**inputs, use_cache=False)
                hidden = outputs.last_hidden_state[:, :-1][trained]
                loss = linear_cross_entropy(hidden, head.weight, targets, denom)
                outputs = {}
            else:
                if self.loss_mode == "sparse":
                    keep = torch.zeros_like(labels, dtype=torch.bool)
                    keep[:, :-1] = trained
                    outputs = model(**inputs, logits_to_keep=keep)
                    logits = outputs.logits.reshape(-1, outputs.logits.shape[-1])
                else:
                    outputs = model(**inputs)
                    logits = outputs.logits[:, :-1, :][trained]
                loss = F.cross_entropy(logits.float(), targets, reduction="sum") / denom
            loss = _global_token_mean(self, loss, num_items_in_batch, model.training)
            return (loss, outputs) if return_outputs else loss

    return PackedSFTTrainer


def _global_token_mean(trainer: Any, loss: Any, num_items_in_batch: Any, training: bool) -> Any:
    """``loss`` x the number of ranks when ``num_items_in_batch`` counts every rank's tokens (HF's
    ``average_tokens_across_devices``): DDP averages the ranks' gradients, so the update is then the global token
    mean, as in one process with the same batch. Unchanged in a single process."""
    ranks = getattr(getattr(trainer, "accelerator", None), "num_processes", 1)
    if ranks > 1 and training and num_items_in_batch is not None:
        if getattr(getattr(trainer, "args", None), "average_tokens_across_devices", False):
            return loss * ranks
    return loss


def _collator(path: SftPath, pad_token_id: int | None) -> Any:
    """The batch collator of an SFT path."""
    if path.collator == "flattening":
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
    if path.collator == "ours":
        return PaddingFreeCollator()
    return PaddedCollator(pad_token_id)


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _fused_parts(model: Any) -> tuple[Any, Any]:
    """(decoder, lm_head) of a causal LM, unwrapped from PEFT."""
    base = _base(model)
    return base.get_decoder(), base.get_output_embeddings()


def supports_fused_loss(model: Any) -> bool:
    """True when the head is a plain bias-free Linear on the decoder output of a known architecture."""
    import torch

    base = _base(model)
    try:
        decoder, head = _fused_parts(model)
    except (AttributeError, NotImplementedError):
        return False
    return (
        getattr(base.config, "model_type", None) in FUSED_LOSS_MODEL_TYPES
        and type(head) is torch.nn.Linear
        and head.bias is None
        and decoder is not None
        and getattr(base.config, "final_logit_softcapping", None) is None
    )


def _use_packed_attention(model: Any) -> None:
    """Switch the model to per-sequence attention for padding-free rows (the stock path masks a dense square), and
    its RMSNorms and LoRA layers to the written-out forwards of ``fused_layers`` (``FINETUNE_CPU_FUSED_LAYERS=0``
    keeps the stock ones)."""
    from .fused_layers import use_fused_lora, use_fused_norms
    from .packed_attention import register as register_packed

    try:
        _base(model).set_attn_implementation(register_packed())
    except (ValueError, ImportError, AttributeError) as exc:  # an architecture that refuses custom attention
        logger.warning("packed attention unavailable (%s); using the stock SDPA mask", exc)
    if os.environ.get("FINETUNE_CPU_FUSED_LAYERS", "1") != "0":
        norms, loras = use_fused_norms(_base(model)), use_fused_lora(model)
        logger.info("written-out forwards: %d RMSNorm and %d LoRA layers", norms, loras)


@register("sft")
class SFTMethod(MethodTrainer):
    """SFT with full, LoRA or QLoRA weights."""

    def prepare_data(self, train: Any, evaluation: Any) -> DataReport:
        """Hold out eval rows, tokenize with assistant-only labels, count truncation."""
        from dataclasses import replace

        ctx, h = self.ctx, self.ctx.spec.hyper
        if train.is_unpaired_preference:
            raise DataError(kto_for_sft_message(train))
        if train.is_preference:
            raise DataError(
                f"The dataset is preference data ({train.format.value}: prompt/chosen/rejected pairs); train it with "
                "method 'dpo' or 'orpo', or upload instruction/chat data for SFT."
            )
        train_examples, eval_examples = self.split(train.examples, evaluation)
        if not train_examples:
            raise DataError("No training rows are left after holding out the validation split.")
        self.eval_examples = eval_examples
        rows, report = build_sft_dataset(
            replace(train, examples=train_examples),
            ctx.tokenizer,
            max_length=h.max_length,
            chat_template=ctx.chat_template,
            train_on=h.train_on,  # type: ignore[arg-type]
            packing=h.packing,
        )
        self.train_rows = rows
        if report.packed_blocks:
            logger.info(
                "packed %d rows (%d tokens) into %d blocks of up to %d tokens",
                len(train_examples),
                report.total_tokens,
                report.packed_blocks,
                h.max_length,
            )
        renderer = ChatRenderer(ctx.tokenizer, ctx.chat_template)
        eval_tok = []
        for ex in eval_examples:
            try:
                tok = tokenize_example(
                    ctx.tokenizer,
                    ex,
                    max_length=UNLIMITED if report.packed_blocks else h.max_length,
                    chat_template=renderer,
                    train_on=h.train_on,  # type: ignore[arg-type]
                )
            except DataError:
                continue
            if tok.num_trained > 0:
                eval_tok.append(tok)
        if report.packed_blocks:  # evaluated like it trains: held-out rows packed into the same blocks
            eval_tok = pack_examples(eval_tok, h.max_length)
        self.eval_rows = eval_tok
        self.report = DataReport(
            format=train.format.value,
            rows=train.rows_read,
            train_rows=len(rows),
            eval_rows=len(eval_tok),
            row_errors=train.rows_skipped,
            truncated=report.truncated_rows,
            dropped=report.all_masked_rows,
            sha256=train.sha256,
            trained_tokens=report.trained_tokens,
            total_tokens=report.total_tokens,
            files=tuple(train.files),
            first_row_errors=[str(e) for e in train.row_errors[:5]],
            packed_blocks=report.packed_blocks or None,
        )
        return self.report

    def build(self, callbacks: Sequence[Any]) -> None:
        """A ``PackedSFTTrainer`` over the tokenized rows."""
        from transformers import TrainingArguments

        ctx = self.ctx
        counters, bridge = self.make_bridge()
        kwargs = common_args(ctx, has_eval=bool(self.eval_rows))
        kwargs.update(remove_unused_columns=False, label_names=["labels"])
        path = select_sft_path(
            device_type=ctx.device.type,
            use_unsloth=ctx.use_unsloth,
            supports_position_ids=_supports(self.model, "position_ids"),
            # The fused loss calls the decoder itself, past DistributedDataParallel's forward (which readies the
            # gradient all-reduce): one process only.
            supports_fused_loss=supports_fused_loss(self.model) and ctx.spec.hyper.num_processes == 1,
            supports_logits_to_keep=_supports(self.model, "logits_to_keep"),
            liger=ctx.device.type == "cuda" and liger_available(),
            flash_attention=ctx.device.type == "cuda" and flash_attention_available(),
        )
        if path.liger:
            kwargs["use_liger_kernel"] = True
        args = TrainingArguments(**kwargs)
        collator = _collator(path, ctx.tokenizer.pad_token_id)
        if path.attention == "packed":
            _use_packed_attention(self.model)
        elif path.attention in ("flash_attention_2", "sdpa"):
            _base(self.model).set_attn_implementation(path.attention)
        self.sft_path = path
        ctx.emitter.log("info", f"SFT path: {path.describe()}")
        cls = _make_trainer_class()
        trainer = cls(
            model=self.model,
            args=args,
            train_dataset=TokenizedDataset(self.train_rows),
            eval_dataset=TokenizedDataset(self.eval_rows) if self.eval_rows else None,
            data_collator=collator,
            processing_class=ctx.tokenizer,
            callbacks=[bridge, *callbacks],
        )
        trainer.loss_mode = os.environ.get("FINETUNE_SFT_LOSS", path.loss)
        trainer.largest_first = path.collator == "ours"
        trainer.model_accepts_loss_kwargs = True  # so the Trainer counts label tokens over the accumulated batch
        self.attach(trainer)
        logger.info(
            "job %s: SFT trainer ready (%s; loss=%s, gradient_checkpointing=%s)",
            ctx.job_id,
            path.describe(),
            trainer.loss_mode,
            self.gradient_checkpointing,
        )

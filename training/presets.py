"""Good starting points for the training wizard (hyperparameters use the Hugging Face names)."""

from __future__ import annotations

from typing import Any

PRESETS: list[dict[str, Any]] = [
    {
        "id": "quick-lora",
        "name": "Quick LoRA",
        "description": "A fast first try: LoRA r=8 on attention, one epoch, a high learning rate. Minutes on a small model.",
        "method": "sft",
        "weights": "lora",
        "hyperparameters": {
            "num_train_epochs": 1,
            "learning_rate": 2e-4,
            "per_device_train_batch_size": 4,
            "gradient_accumulation_steps": 1,
            "max_length": 512,
            "lora_r": 8,
            "lora_alpha": 16,
            "lora_dropout": 0.05,
            "lr_scheduler_type": "linear",
            "warmup_ratio": 0.03,
        },
    },
    {
        "id": "quality-lora",
        "name": "Quality LoRA",
        "description": "LoRA r=32 on all linear layers, three epochs with cosine decay, evaluation every 50 steps, "
        "early stopping and the best checkpoint kept: better results.",
        "method": "sft",
        "weights": "lora",
        "hyperparameters": {
            "num_train_epochs": 3,
            "learning_rate": 1e-4,
            "per_device_train_batch_size": 4,
            "gradient_accumulation_steps": 4,
            "max_length": 2048,
            "lora_r": 32,
            "lora_alpha": 64,
            "lora_dropout": 0.05,
            "lora_target_modules": "all-linear",
            "lr_scheduler_type": "cosine",
            "warmup_ratio": 0.05,
            "validation_split": 0.05,
            # Early stopping: stop after 3 evaluations without a better eval loss and keep
            # the best weights as the result.
            "eval_steps": 50,
            "early_stopping_patience": 3,
            "early_stopping_threshold": 0.0,
            "load_best_model_at_end": True,
        },
    },
    {
        "id": "qlora-large",
        "name": "QLoRA for large models",
        "description": "4-bit base weights + LoRA: fine-tune 7-70B models on one GPU. Needs bitsandbytes.",
        "method": "sft",
        "weights": "qlora",
        "hyperparameters": {
            "num_train_epochs": 2,
            "learning_rate": 2e-4,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 8,
            "max_length": 2048,
            "lora_r": 16,
            "lora_alpha": 32,
            "lora_dropout": 0.05,
            "lora_target_modules": "all-linear",
            "lr_scheduler_type": "cosine",
            "warmup_ratio": 0.03,
        },
    },
    {
        "id": "full",
        "name": "Full fine-tune",
        "description": "Every weight trains: the most capacity, the most memory. Best for small models.",
        "method": "sft",
        "weights": "full",
        "hyperparameters": {
            "num_train_epochs": 2,
            "learning_rate": 2e-5,
            "per_device_train_batch_size": 4,
            "gradient_accumulation_steps": 4,
            "max_length": 1024,
            "weight_decay": 0.01,
            "lr_scheduler_type": "cosine",
            "warmup_ratio": 0.05,
        },
    },
    {
        "id": "dpo",
        "name": "DPO (preferences)",
        "description": "Direct Preference Optimization on chosen/rejected pairs, with LoRA. Start from an SFT model.",
        "method": "dpo",
        "weights": "lora",
        "hyperparameters": {
            "num_train_epochs": 1,
            "learning_rate": 5e-6,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 4,
            "max_length": 1024,
            "beta": 0.1,
            "lora_r": 16,
            "lora_alpha": 32,
            "lr_scheduler_type": "linear",
            "warmup_ratio": 0.1,
        },
    },
    {
        "id": "orpo",
        "name": "ORPO (preferences, no SFT step)",
        "description": "Odds-ratio preference optimization: SFT and preference alignment in one pass, with LoRA.",
        "method": "orpo",
        "weights": "lora",
        "hyperparameters": {
            "num_train_epochs": 1,
            "learning_rate": 8e-6,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 4,
            "max_length": 1024,
            "beta": 0.1,
            "lora_r": 16,
            "lora_alpha": 32,
            "lr_scheduler_type": "linear",
            "warmup_ratio": 0.1,
        },
    },
    {
        "id": "kto",
        "name": "KTO (labelled answers)",
        "description": "Kahneman-Tversky Optimization on answers labelled desirable or undesirable (no pairs needed), "
        "with LoRA. Start from an SFT model; the loss weights follow the data's balance.",
        "method": "kto",
        "weights": "lora",
        "hyperparameters": {
            "num_train_epochs": 1,
            "learning_rate": 5e-6,
            "per_device_train_batch_size": 4,
            "gradient_accumulation_steps": 2,
            "max_length": 1024,
            "beta": 0.1,
            "lora_r": 16,
            "lora_alpha": 32,
            "lr_scheduler_type": "linear",
            "warmup_ratio": 0.1,
        },
    },
]


def get_preset(preset_id: str) -> dict[str, Any] | None:
    return next((p for p in PRESETS if p["id"] == preset_id), None)

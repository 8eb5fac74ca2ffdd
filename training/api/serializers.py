"""Shapes of the training API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from finetune.serializers import FastReadMixin, StrictInputMixin
from training.engine.spec import METHODS
from training.models import LogLine, MetricPoint, TrainingJob


class JobCreateSerializer(StrictInputMixin, serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    base_model = serializers.IntegerField(help_text="An id from GET /api/models/base/")
    dataset = serializers.IntegerField(help_text="A dataset id")
    dataset_version = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    method = serializers.ChoiceField(choices=list(METHODS), default="sft")
    weights = serializers.ChoiceField(choices=["full", "lora", "qlora"], default="lora")
    hyperparameters = serializers.DictField(required=False, default=dict)
    preset = serializers.CharField(required=False, allow_blank=True)
    backend = serializers.ChoiceField(choices=["local", "modal"], default="local")
    modal_gpu = serializers.CharField(required=False, allow_blank=True, default="")
    compare_prompts = serializers.IntegerField(
        required=False,
        default=0,
        min_value=0,
        max_value=100,
        help_text="After training, the base and the fine-tuned model answer this many held-out prompts for the "
        "model's evaluation report (exact match and ROUGE-L where a prompt has a reference answer); 0: none.",
    )
    eval_dataset = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="A dataset of yours to evaluate on (eval loss and the report's prompts), in the training dataset's "
        "format; empty: the training dataset's validation split (or validation_split of its rows).",
    )
    eval_dataset_version = serializers.IntegerField(required=False, allow_null=True, min_value=1)


class JobSerializer(FastReadMixin, serializers.ModelSerializer):
    # The list and detail annotate these on the job row (JobViewSet.get_queryset); a job loaded otherwise reads its
    # relations.
    base_model_name = serializers.SerializerMethodField()
    dataset_name = serializers.SerializerMethodField()
    dataset_version = serializers.SerializerMethodField()
    model = serializers.SerializerMethodField()

    class Meta:
        model = TrainingJob
        fields = [
            "id",
            "name",
            "status",
            "phase",
            "base_model",
            "base_model_name",
            "dataset",
            "dataset_name",
            "dataset_version",
            "method",
            "weights",
            "hyperparameters",
            "backend",
            "modal_gpu",
            "attempts",
            "last_checkpoint_step",
            "current_step",
            "total_steps",
            "progress",
            "eta_s",
            "error",
            "error_kind",
            "cancel_requested",
            "model",
            "result",
            "cost_usd",
            "compute_seconds",
            "init_from_job",
            "sweep",
            "sweep_params",
            "compare_prompts",
            "eval_dataset",
            "versions",
            "dataset_sha256",
            "metric_seq",
            "log_seq",
            "created",
            "started",
            "finished",
        ]
        read_only_fields = fields

    def get_base_model_name(self, obj: TrainingJob) -> str:
        return str(obj.__dict__.get("base_model_name") or obj.base_model.name)

    def get_dataset_name(self, obj: TrainingJob) -> str:
        return str(obj.__dict__.get("dataset_name") or obj.dataset.name)

    def get_dataset_version(self, obj: TrainingJob) -> int:
        return int(obj.__dict__.get("dataset_version") or obj.dataset.version)

    def get_model(self, obj: TrainingJob) -> int | None:
        if "produced_model_pk" in obj.__dict__:
            return obj.__dict__["produced_model_pk"]
        produced = getattr(obj, "produced_model", None)
        return produced.pk if produced else None


# The job's own columns JobSerializer shows (lists load only these).
JOB_COLUMNS = [
    name
    for name in JobSerializer.Meta.fields
    if name not in ("base_model_name", "dataset_name", "dataset_version", "model")
]


class MetricPointSerializer(serializers.ModelSerializer):
    class Meta:
        model = MetricPoint
        fields = [
            "seq",
            "kind",
            "step",
            "epoch",
            "loss",
            "eval_loss",
            "learning_rate",
            "grad_norm",
            "memory_mb",
            "tokens_per_s",
            "eta_s",
            "time",
            "extra",
        ]


class LogLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = LogLine
        fields = ["seq", "level", "line", "time"]


class PresetSerializer(serializers.Serializer):
    """A starting point for the wizard (documentation of training.presets.PRESETS)."""

    id = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    method = serializers.ChoiceField(choices=list(METHODS))
    weights = serializers.ChoiceField(choices=["full", "lora", "qlora"])
    hyperparameters = serializers.DictField()


class ContinueSerializer(StrictInputMixin, serializers.Serializer):
    extra_epochs = serializers.FloatField(min_value=0.01, max_value=100)


def apply_preset(data: dict[str, Any]) -> dict[str, Any]:
    """Fill method/weights/hyperparameters from a preset; explicit values win."""
    from training.presets import get_preset

    preset_id = data.get("preset")
    if not preset_id:
        return data
    preset = get_preset(preset_id)
    if preset is None:
        from finetune.exceptions import ServiceError

        raise ServiceError(f"Unknown preset '{preset_id}'.", field="preset")
    return {**data, "hyperparameters": {**preset["hyperparameters"], **(data.get("hyperparameters") or {})}}

"""GET /api/training/options/: the choices the training UI offers, served from their Python source of truth (the
engine's learning-rate schedulers, the settings' Modal GPU table) instead of copied into the frontend."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from training.engine.spec import LR_SCHEDULERS


class ModalGpuSerializer(serializers.Serializer):
    """One Modal GPU kind a job can run on."""

    name = serializers.CharField(help_text="The value of a job's `modal_gpu`, e.g. `A10G`.")
    memory_gb = serializers.IntegerField(help_text="Its memory, what the estimate's `fits` compares against.")
    usd_per_hour = serializers.FloatField(allow_null=True, help_text="Modal's price (the operators' settings table).")


class TrainingOptionsSerializer(serializers.Serializer):
    lr_schedulers = serializers.ListField(
        child=serializers.CharField(), help_text="The values `hyperparameters.lr_scheduler_type` accepts."
    )
    modal_gpus = ModalGpuSerializer(many=True, help_text="The GPU kinds of the Modal backend, smallest first.")


def training_options() -> dict[str, Any]:
    """The options as the API serves them (the same for every user)."""
    prices = settings.MODAL_GPU_PRICES_USD_PER_HOUR
    return {
        "lr_schedulers": list(LR_SCHEDULERS),
        "modal_gpus": [
            {"name": name, "memory_gb": memory, "usd_per_hour": prices.get(name)}
            for name, memory in settings.MODAL_GPU_MEMORY_GB.items()
        ],
    }


class TrainingOptionsView(APIView):
    """The training wizard's choices: learning-rate schedulers and Modal GPU kinds with their memory and price."""

    @extend_schema(responses=TrainingOptionsSerializer)
    def get(self, request: Request) -> Response:
        return Response(TrainingOptionsSerializer(training_options()).data)

"""Hyperparameter sweeps API (``/api/training/sweeps/``): list, create, detail with the variants' ranking and loss
curves, cancel, promote, delete. Sweeps are scoped to the requesting user: other users' ids answer 404."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from finetune.serializers import StrictInputMixin
from training import sweeps
from training.models import Sweep

from . import serializers as s

PARAMETERS_HELP = (
    "Up to 3 numeric hyperparameters to vary. Grid: {name: [values]} (every combination, at most 12). Random: "
    '{name: {"min", "max", "log"}} or {name: [values to choose from]}, `max_variants` seeded draws.'
)


class SweepCreateSerializer(s.JobCreateSerializer):
    """A job creation body (the spec every variant starts from) plus what to sweep."""

    strategy = serializers.ChoiceField(choices=["grid", "random"], default="grid")
    parameters = serializers.DictField(help_text=PARAMETERS_HELP)
    max_variants = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=sweeps.MAX_VARIANTS, help_text="Random: how many."
    )
    seed = serializers.IntegerField(default=0, min_value=0, max_value=2**31 - 1, help_text="Random: the draws' seed.")


class SweepSerializer(serializers.Serializer):
    """A sweep as lists show it."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["running", "finished"])
    strategy = serializers.ChoiceField(choices=["grid", "random"])
    parameters = serializers.DictField()
    max_variants = serializers.IntegerField()
    seed = serializers.IntegerField()
    metric = serializers.CharField(help_text="What ranks the variants: eval_loss (train_loss when one has no eval).")
    spec = serializers.DictField(help_text="The job body every variant starts from.")
    variant_count = serializers.IntegerField()
    active_count = serializers.IntegerField()
    best_job = serializers.IntegerField(allow_null=True)
    promoted_model = serializers.IntegerField(allow_null=True)
    created = serializers.DateTimeField()
    finished = serializers.DateTimeField(allow_null=True)


class CurvePointSerializer(serializers.Serializer):
    step = serializers.IntegerField()
    loss = serializers.FloatField()


class EvalPointSerializer(serializers.Serializer):
    step = serializers.IntegerField()
    eval_loss = serializers.FloatField()


class SweepVariantSerializer(serializers.Serializer):
    """One variant: its job, the swept values, its losses and rank (1 = best; null until it succeeds)."""

    job = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()
    params = serializers.DictField()
    progress = serializers.FloatField()
    current_step = serializers.IntegerField()
    total_steps = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True)
    eval_loss = serializers.FloatField(allow_null=True)
    final_loss = serializers.FloatField(allow_null=True)
    rank = serializers.IntegerField(allow_null=True)
    best = serializers.BooleanField()
    model = serializers.IntegerField(allow_null=True)
    curve = CurvePointSerializer(many=True, help_text="Training loss by step (downsampled to 200 points).")
    eval_points = EvalPointSerializer(many=True)


class SweepDetailSerializer(SweepSerializer):
    """A sweep with its variants, ranked by ``metric_used``."""

    metric_used = serializers.ChoiceField(
        choices=["eval_loss", "train_loss"],
        help_text="eval_loss, or train_loss (final training loss) when a succeeded variant has no eval loss.",
    )
    variants = SweepVariantSerializer(many=True)


class PromoteSerializer(StrictInputMixin, serializers.Serializer):
    job = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=2**63 - 1,
        help_text="A variant's job id (default: the best)",
    )


class PromotedSerializer(serializers.Serializer):
    """The promoted model: registry name and version."""

    model = serializers.IntegerField()
    name = serializers.CharField()
    version = serializers.IntegerField()
    tag = serializers.CharField()


def _detail(sweep: Sweep) -> dict[str, Any]:
    return SweepDetailSerializer(sweeps.sweep_summary(sweep)).data


class SweepViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Create a sweep (one job per variant), list, inspect (ranking and curves), cancel, promote, delete."""

    serializer_class = SweepSerializer

    def get_queryset(self) -> QuerySet[Sweep]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user, no database
            return Sweep.objects.none()
        return sweeps.owned_sweeps(self.request.user)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        rows = [sweeps.sweep_fields(x, variant_count=x.variant_count, active_count=x.active_count) for x in page or []]
        return self.get_paginated_response(SweepSerializer(rows, many=True).data)

    @extend_schema(responses=SweepDetailSerializer)
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(_detail(self.get_object()))

    @extend_schema(request=SweepCreateSerializer, responses={201: SweepDetailSerializer})
    def create(self, request: Request) -> Response:
        data = SweepCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = s.apply_preset(dict(data.validated_data))
        spec = {
            k: v[k]
            for k in (
                "base_model",
                "dataset",
                "dataset_version",
                "method",
                "weights",
                "hyperparameters",
                "backend",
                "compare_prompts",
                "eval_dataset",
                "eval_dataset_version",
            )
            if v.get(k) is not None
        }
        spec["modal_gpu"] = v.get("modal_gpu") or ""
        sweep = sweeps.create_sweep(
            owner=request.user,
            name=v.get("name") or "",
            spec=spec,
            strategy=v["strategy"],
            parameters=v["parameters"],
            max_variants=v.get("max_variants"),
            seed=v["seed"],
        )
        return Response(_detail(sweep), status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        """Delete a finished sweep's record (its jobs and models stay); 409 while a variant is active."""
        sweeps.delete_sweep(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=SweepDetailSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Cancel every unfinished variant."""
        return Response(_detail(sweeps.cancel_sweep(self.get_object())))

    @extend_schema(request=PromoteSerializer, responses=PromotedSerializer)
    @action(detail=True, methods=["post"])
    def promote(self, request: Request, pk: str) -> Response:
        """Promote a variant's model (default: the best) into the registry under the sweep's name."""
        sweep = self.get_object()
        data = PromoteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        model = sweeps.promote(sweep, data.validated_data.get("job"))
        return Response(
            PromotedSerializer({"model": model.pk, **{k: getattr(model, k) for k in ("name", "version", "tag")}}).data
        )

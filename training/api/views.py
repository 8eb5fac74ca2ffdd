"""Training API entry points (jobs scoped to the requesting user: other users' ids answer 404)."""

from __future__ import annotations

from typing import Any

from django.core.files.storage import default_storage
from django.db.models import F, QuerySet
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from finetune import artifacts
from finetune.exceptions import ServiceError
from models_app.catalogue import find_usable_base_model
from training import backfill, estimate, services, tracking
from training.models import TrainingJob
from training.presets import PRESETS

from . import serializers as s


class PresetsView(APIView):
    """Good starting points for the wizard."""

    @extend_schema(responses=s.PresetSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(PRESETS)


class EstimateView(APIView):
    """Tokens, duration, peak memory by method, fit, and Modal cost per GPU, for a job body."""

    @extend_schema(request=s.JobCreateSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request) -> Response:
        data = s.JobCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = s.apply_preset(dict(data.validated_data))
        ds = services.resolve_dataset(request.user, v["dataset"], v.get("dataset_version"))
        base = find_usable_base_model(request.user, v["base_model"])  # a private/gated one only for who may read it
        if base is None:
            raise ServiceError("Base model not found.", field="base_model")
        hyper = services.validate_hyperparameters(v.get("hyperparameters") or {})
        return Response(
            estimate.estimate(
                dataset=ds,
                base_model=base,
                method=v["method"],
                weights=v["weights"],
                hyper=hyper,
                backend=v["backend"],
            )
        )


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Create, list, inspect, cancel, resume, continue and delete training jobs; metrics and logs for backfill."""

    serializer_class = s.JobSerializer

    def count_queryset(self) -> QuerySet[TrainingJob]:
        """The listed rows without the representation's joins (what the paginator counts)."""
        qs = TrainingJob.objects.filter(owner=self.request.user)
        for field in ("status", "method", "backend"):
            value = self.request.query_params.get(field)
            if value:
                qs = qs.filter(**{field: value})
        return qs

    def get_queryset(self) -> QuerySet[TrainingJob]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user, no database
            return TrainingJob.objects.none()
        qs = self.count_queryset()
        if self.action in ("list", "retrieve"):  # read only what the job's representation shows, in one row each
            return qs.only(*s.JOB_COLUMNS).annotate(
                base_model_name=F("base_model__name"),
                dataset_name=F("dataset__name"),
                dataset_version=F("dataset__version"),
                produced_model_pk=F("produced_model__id"),
            )
        return qs.select_related("base_model", "dataset", "produced_model")

    @extend_schema(
        parameters=[OpenApiParameter("status", str), OpenApiParameter("method", str), OpenApiParameter("backend", str)]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=s.JobCreateSerializer, responses={201: s.JobSerializer})
    def create(self, request: Request) -> Response:
        data = s.JobCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = s.apply_preset(dict(data.validated_data))
        job = services.create_job(
            owner=request.user,
            name=v.get("name") or "",
            base_model_id=v["base_model"],
            dataset_id=v["dataset"],
            dataset_version=v.get("dataset_version"),
            method=v["method"],
            weights=v["weights"],
            hyperparameters=v.get("hyperparameters") or {},
            backend=v["backend"],
            modal_gpu=v.get("modal_gpu") or "",
            compare_prompts=v.get("compare_prompts") or 0,
            eval_dataset_id=v.get("eval_dataset"),
            eval_dataset_version=v.get("eval_dataset_version"),
        )
        return Response(s.JobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        services.delete_job(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=s.JobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        return Response(s.JobSerializer(services.request_cancel(self.get_object())).data)

    @extend_schema(request=None, responses=s.JobSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str) -> Response:
        return Response(s.JobSerializer(services.resume_job(self.get_object())).data)

    @extend_schema(request=s.ContinueSerializer, responses={201: s.JobSerializer})
    @action(detail=True, methods=["post"], url_path="continue")
    def continue_training(self, request: Request, pk: str) -> Response:
        data = s.ContinueSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = services.continue_job(self.get_object(), extra_epochs=data.validated_data["extra_epochs"])
        return Response(s.JobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[OpenApiParameter("after_seq", int), OpenApiParameter("limit", int)],
        responses=s.MetricPointSerializer(many=True),
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def metrics(self, request: Request, pk: str) -> HttpResponse:
        """Ordered metric points after `after_seq` (for charts and for backfill after a reconnect), at most `limit`
        (default and cap: METRICS_PAGE_MAX, 5000); a full page means more may follow."""
        job_id, metric_seq, _ = self._owned_job(pk)
        return _json(
            backfill.metric_points_json(
                job_id,
                after_seq=_int_param(request, "after_seq", 0),
                limit=_int_param(request, "limit", None),
                last_seq=metric_seq,
            )
        )

    @extend_schema(
        parameters=[OpenApiParameter("after_seq", int), OpenApiParameter("limit", int)],
        responses=s.LogLineSerializer(many=True),
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def logs(self, request: Request, pk: str) -> HttpResponse:
        job_id, _, log_seq = self._owned_job(pk)
        return _json(
            backfill.log_lines_json(
                job_id,
                after_seq=_int_param(request, "after_seq", 0),
                limit=_int_param(request, "limit", None),
                last_seq=log_seq,
            )
        )

    @extend_schema(
        request=None,
        responses={
            (200, "application/x-tar"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The job's TensorBoard event files, as a tar archive"
            ),
            302: OpenApiResponse(description="Redirect to a short-lived link to the archive (S3 storage)"),
            404: OpenApiResponse(description="No such job for this user"),
            409: OpenApiResponse(description="The job has no TensorBoard events (not reported, or not finished)"),
        },
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def tensorboard(self, request: Request, pk: str) -> HttpResponseBase:
        """The TensorBoard event files of a job trained with ``report_to: ["tensorboard"]`` (``tensorboard --logdir``
        on the unpacked folder shows them)."""
        job = self.get_object()
        stored = tracking.tensorboard_artifact(job)
        filename = f"job-{job.pk}-tensorboard.tar"
        direct = artifacts.presigned_download_url(stored["key"], filename)
        if direct:  # S3: the bytes come from the bucket, not through the web tier
            return HttpResponseRedirect(direct)
        response = FileResponse(
            default_storage.open(stored["key"], "rb"),
            as_attachment=True,
            filename=filename,
            content_type="application/x-tar",
        )
        response["Cache-Control"] = "private, no-store"
        return response

    def _owned_job(self, pk: str) -> tuple[int, int, int]:
        """(id, metric_seq, log_seq) of the job when the requesting user owns it (404 otherwise)."""
        row = (
            TrainingJob.objects.filter(pk=pk if str(pk).isdigit() else -1, owner=self.request.user)
            .values_list("pk", "metric_seq", "log_seq")
            .first()
        )
        if row is None:
            raise Http404
        return row


def _json(text: str) -> HttpResponse:
    """A JSON body PostgreSQL already built (training.backfill), sent as it is."""
    return HttpResponse(text, content_type="application/json")


def _int_param(request: Request, name: str, default: int | None) -> Any:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ServiceError(f"{name} must be an integer.", field=name) from None

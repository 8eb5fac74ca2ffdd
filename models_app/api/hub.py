"""Models API: Hub routes (search, model info, download, fit estimate, push to the Hub). Entry points only: parse the
request, call one service in models_app.hub, render. Every object is scoped to the requesting user (others: 404)."""

from __future__ import annotations

from dataclasses import asdict

from django.urls import URLPattern, path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from finetune.exceptions import ServiceError
from finetune.serializers import StrictInputMixin
from models_app import catalogue, hub
from models_app.models import BaseModel, HubPush

# A Hub repository id as check_repo_id accepts it (`namespace/name`; no `--` or `..`, no `.git` ending), as a
# lookahead-free pattern: each name is alphanumeric runs joined by single `.`, `_` or `-`.
_HUB_NAME = r"[A-Za-z0-9]+([._-][A-Za-z0-9]+)*"
HUB_REPO_ID_PATTERN = rf"^{_HUB_NAME}/{_HUB_NAME}$"

_error = inline_serializer("HubError", {"detail": serializers.CharField(), "errors": serializers.DictField()})


class HubModelSummarySerializer(serializers.Serializer):
    repo_id = serializers.CharField()
    downloads = serializers.IntegerField()
    likes = serializers.IntegerField()
    gated = serializers.BooleanField()
    gated_mode = serializers.CharField()
    pipeline_tag = serializers.CharField()
    library_name = serializers.CharField()
    last_modified = serializers.CharField(allow_null=True)


class HubModelDetailsSerializer(serializers.Serializer):
    repo_id = serializers.CharField()
    sha = serializers.CharField()
    architecture = serializers.CharField()
    model_type = serializers.CharField()
    parameters = serializers.IntegerField(allow_null=True)
    parameters_source = serializers.CharField()
    context_length = serializers.IntegerField(allow_null=True)
    license = serializers.CharField()
    gated = serializers.BooleanField()
    gated_mode = serializers.CharField()
    private = serializers.BooleanField()
    size_bytes = serializers.IntegerField()
    total_size_bytes = serializers.IntegerField()
    has_chat_template = serializers.BooleanField(allow_null=True)
    has_safetensors = serializers.BooleanField()
    pipeline_tag = serializers.CharField()
    library_name = serializers.CharField()
    downloads = serializers.IntegerField()
    likes = serializers.IntegerField()
    files = serializers.ListField(child=serializers.CharField())
    problems = serializers.ListField(child=serializers.CharField())
    downloadable = serializers.BooleanField()


class HubBaseModelSerializer(serializers.ModelSerializer):
    """A catalogue entry with its download state."""

    class Meta:
        model = BaseModel
        fields = [
            "id",
            "name",
            "source",
            "repo_id",
            "architecture",
            "parameters",
            "context_length",
            "license",
            "has_chat_template",
            "size_bytes",
            "status",
            "description",
            "gated",
            "download_progress",
            "error",
        ]
        read_only_fields = fields


class DownloadRequestSerializer(StrictInputMixin, serializers.Serializer):
    repo_id = serializers.RegexField(
        HUB_REPO_ID_PATTERN, max_length=96 * 2 + 1, help_text="A Hub model id, `namespace/name`."
    )


class FitQuerySerializer(serializers.Serializer):
    method = serializers.ChoiceField(choices=hub.FIT_METHODS, default="lora")
    max_length = serializers.IntegerField(default=2048, min_value=16, max_value=131072)
    batch_size = serializers.IntegerField(default=1, min_value=1, max_value=1024)


class PushRequestSerializer(StrictInputMixin, serializers.Serializer):
    repo_name = serializers.CharField(max_length=200, help_text="`name` (your namespace) or `namespace/name`.")
    private = serializers.BooleanField(default=True)


class HubPushSerializer(serializers.ModelSerializer):
    model_name = serializers.CharField(source="model.name", read_only=True)
    model_version = serializers.IntegerField(source="model.version", read_only=True)

    class Meta:
        model = HubPush
        fields = [
            "id",
            "model",
            "model_name",
            "model_version",
            "repo_id",
            "private",
            "repo_url",
            "commit_sha",
            "status",
            "progress",
            "stage",
            "error",
            "retryable",
            "created",
            "started",
            "finished",
        ]
        read_only_fields = fields


class HubSearchView(APIView):
    """Search text-generation models on the Hugging Face Hub (with your own token)."""

    @extend_schema(
        parameters=[
            OpenApiParameter("q", str, description="Text the model id contains."),
            OpenApiParameter("limit", int, description="At most this many results (default 20)."),
        ],
        responses={200: HubModelSummarySerializer(many=True), 400: _error, 429: _error, 502: _error},
    )
    def get(self, request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit") or 20)
        except ValueError:
            raise ServiceError("limit must be an integer.", field="limit") from None
        found = hub.search_models(request.user, request.query_params.get("q", ""), limit)
        return Response(HubModelSummarySerializer([asdict(m) for m in found], many=True).data)


class HubInfoView(APIView):
    """Architecture, parameter count, license, gated, size and chat template of a Hub model."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "repo_id",
                {"type": "string", "pattern": HUB_REPO_ID_PATTERN},
                required=True,
                description="`namespace/name`",
            )
        ],
        responses={200: HubModelDetailsSerializer, 400: _error, 403: _error, 404: _error, 502: _error},
    )
    def get(self, request: Request) -> Response:
        details = hub.model_info(request.user, request.query_params.get("repo_id", ""))
        return Response(HubModelDetailsSerializer({**asdict(details), "downloadable": details.downloadable}).data)


class HubDownloadView(APIView):
    """Add a Hub model to the catalogue and download it into the shared model cache (a background task)."""

    @extend_schema(
        request=DownloadRequestSerializer,
        responses={202: HubBaseModelSerializer, 200: HubBaseModelSerializer, 400: _error, 404: _error},
    )
    def post(self, request: Request) -> Response:
        data = DownloadRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row = hub.request_download(request.user, data.validated_data["repo_id"])
        code = status.HTTP_200_OK if row.status == BaseModel.Status.AVAILABLE else status.HTTP_202_ACCEPTED
        return Response(HubBaseModelSerializer(row).data, status=code)


class BaseModelFitView(APIView):
    """Memory needed to train a base model with full / LoRA / QLoRA weights at a max length and batch size."""

    @extend_schema(parameters=[FitQuerySerializer], responses={200: OpenApiTypes.OBJECT, 400: _error, 404: _error})
    def get(self, request: Request, pk: int) -> Response:
        query = FitQuerySerializer(data=request.query_params.dict())  # a plain dict: `?method=` is refused, not absent
        query.is_valid(raise_exception=True)
        base = catalogue.get_usable_base_model(request.user, pk)
        return Response(hub.fit_estimate(base, **query.validated_data))


class PushToHubView(APIView):
    """Push one of your models to a Hugging Face Hub repository (a background task; a re-push is a new commit)."""

    @extend_schema(request=PushRequestSerializer, responses={202: HubPushSerializer, 400: _error, 404: _error})
    def post(self, request: Request, pk: int) -> Response:
        data = PushRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        push = hub.request_push(request.user, pk, data.validated_data["repo_name"], data.validated_data["private"])
        return Response(HubPushSerializer(push).data, status=status.HTTP_202_ACCEPTED)


class ModelPushListView(APIView):
    """The pushes of one of your models, newest first."""

    @extend_schema(responses={200: HubPushSerializer(many=True), 404: _error})
    def get(self, request: Request, pk: int) -> Response:
        from models_app.models import FineTunedModel

        if not FineTunedModel.objects.filter(owner=request.user, pk=pk).exists():
            raise ServiceError("Not found.", status_code=404)
        pushes = hub.user_pushes(request.user).filter(model_id=pk)
        return Response(HubPushSerializer(pushes, many=True).data)


class PushDetailView(APIView):
    """One push: status, progress, stage, error, repository URL and commit."""

    @extend_schema(responses={200: HubPushSerializer, 404: _error})
    def get(self, request: Request, pk: int) -> Response:
        push = hub.user_pushes(request.user).filter(pk=pk).first()
        if push is None:
            raise ServiceError("Not found.", status_code=404)
        return Response(HubPushSerializer(push).data)


class PushRetryView(APIView):
    """Run a failed push again."""

    @extend_schema(request=None, responses={202: HubPushSerializer, 404: _error, 409: _error})
    def post(self, request: Request, pk: int) -> Response:
        push = hub.retry_push(request.user, pk)
        return Response(HubPushSerializer(push).data, status=status.HTTP_202_ACCEPTED)


urlpatterns: list[URLPattern] = [
    path("hub/search/", HubSearchView.as_view(), name="hub-search"),
    path("hub/info/", HubInfoView.as_view(), name="hub-info"),
    path("hub/download/", HubDownloadView.as_view(), name="hub-download"),
    path("base/<int:pk>/fit/", BaseModelFitView.as_view(), name="base-model-fit"),
    path("<int:pk>/push-hub/", PushToHubView.as_view(), name="model-push-hub"),
    path("<int:pk>/pushes/", ModelPushListView.as_view(), name="model-pushes"),
    path("push-hub/<int:pk>/", PushDetailView.as_view(), name="push-detail"),
    path("push-hub/<int:pk>/retry/", PushRetryView.as_view(), name="push-retry"),
]

"""Models API: the base-model catalogue and the user's fine-tuned model registry (versions, rename, compare,
delete with artifacts). Every fine-tuned lookup is scoped to the requesting user: another user's id answers 404."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from finetune.exceptions import ServiceError
from finetune.serializers import FastReadMixin, StrictInputMixin
from models_app import catalogue, services
from models_app.models import BaseModel, FineTunedModel


class BaseModelSerializer(FastReadMixin, serializers.ModelSerializer):
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
        ]


class FineTunedModelSerializer(FastReadMixin, serializers.ModelSerializer):
    base_model_name = serializers.CharField(source="base_model.name", read_only=True)
    base_model_repo_id = serializers.CharField(source="base_model.repo_id", read_only=True)
    latest = serializers.SerializerMethodField(help_text="The newest version of its name.")
    latest_version = serializers.SerializerMethodField()
    job_status = serializers.SerializerMethodField()
    dataset = serializers.SerializerMethodField()
    dataset_name = serializers.SerializerMethodField()
    dataset_version = serializers.SerializerMethodField()
    dataset_sha256 = serializers.SerializerMethodField()
    exports_count = serializers.SerializerMethodField()
    is_adapter = serializers.SerializerMethodField()

    class Meta:
        model = FineTunedModel
        fields = [
            "id",
            "name",
            "version",
            "latest",
            "latest_version",
            "base_model",
            "base_model_name",
            "base_model_repo_id",
            "job",
            "job_status",
            "dataset",
            "dataset_name",
            "dataset_version",
            "dataset_sha256",
            "method",
            "weights",
            "is_adapter",
            "metrics",
            "hyperparameters",
            "tag",
            "notes",
            "exports_count",
            "created",
        ]
        read_only_fields = fields

    def get_latest(self, obj: FineTunedModel) -> bool:
        return services.is_latest(obj)

    def get_latest_version(self, obj: FineTunedModel) -> int:
        return int(getattr(obj, "latest_version", None) or obj.version)

    def get_job_status(self, obj: FineTunedModel) -> str | None:
        return obj.job.status if obj.job else None

    def get_dataset(self, obj: FineTunedModel) -> int | None:
        return obj.job.dataset_id if obj.job else None

    def get_dataset_name(self, obj: FineTunedModel) -> str | None:
        return obj.job.dataset.name if obj.job else None

    def get_dataset_version(self, obj: FineTunedModel) -> int | None:
        return obj.job.dataset.version if obj.job else None

    def get_dataset_sha256(self, obj: FineTunedModel) -> str | None:
        return obj.job.dataset_sha256 if obj.job else None

    def get_exports_count(self, obj: FineTunedModel) -> int:
        count = getattr(obj, "exports_count", None)
        return int(count if count is not None else obj.exports.count())

    def get_is_adapter(self, obj: FineTunedModel) -> bool:
        return obj.weights in ("lora", "qlora")


class FineTunedModelDetailSerializer(FineTunedModelSerializer):
    """One model with its evaluation report and loss curve (metric points of its job)."""

    eval_report = serializers.SerializerMethodField()
    loss_curve = serializers.SerializerMethodField()

    class Meta(FineTunedModelSerializer.Meta):
        fields = [*FineTunedModelSerializer.Meta.fields, "eval_report", "loss_curve"]
        read_only_fields = fields

    def get_eval_report(self, obj: FineTunedModel) -> dict[str, Any] | None:
        return services.eval_report(obj)

    def get_loss_curve(self, obj: FineTunedModel) -> list[dict[str, Any]]:
        return services.loss_curve(obj)


class FineTunedModelUpdateSerializer(StrictInputMixin, serializers.Serializer):
    name = serializers.CharField(
        required=False, max_length=200, help_text="Renames every version of this model (409 when the name is taken)."
    )
    tag = serializers.CharField(required=False, allow_blank=True, max_length=100)
    notes = serializers.CharField(required=False, allow_blank=True, max_length=20_000, trim_whitespace=False)


class BaseModelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Models available for fine-tuning: the shared ones, and those from private or gated Hub repos that your own
    Hugging Face token can read (others answer 404)."""

    serializer_class = BaseModelSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> QuerySet[BaseModel]:
        if getattr(self, "swagger_fake_view", False):
            return BaseModel.objects.none()
        return catalogue.usable_base_models(self.request.user)

    def get_object(self) -> BaseModel:
        return catalogue.get_usable_base_model(self.request.user, self.kwargs["pk"])


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_MAX_ID = 2**63 - 1


def _flag(value: str | None, name: str) -> bool:
    """A boolean query parameter (absent: false); anything but true/false, 1/0, yes/no, on/off is refused."""
    if value is None:
        return False
    if value.lower() not in _TRUE + _FALSE:
        raise ServiceError(f"{name} must be true or false.", field=name)
    return value.lower() in _TRUE


class FineTunedModelViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The user's fine-tuned models: list (filters `name`, `search`, `base_model`, `latest`), detail, PATCH
    (name, tag, notes), DELETE (with artifacts), versions of the same name, and compare two models."""

    serializer_class = FineTunedModelSerializer
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[FineTunedModel]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user, no database
            return FineTunedModel.objects.none()
        return services.owned_models(self.request.user)

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        if self.action == "retrieve":
            return FineTunedModelDetailSerializer
        if self.action == "partial_update":
            return FineTunedModelUpdateSerializer
        return FineTunedModelSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("name", str, description="Exact model name"),
            OpenApiParameter("search", str, description="Part of the name or tag"),
            OpenApiParameter(
                "base_model", {"type": "integer", "minimum": 0, "maximum": _MAX_ID}, description="Base model id"
            ),
            OpenApiParameter("latest", bool, description="Only the newest version of each name"),
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def filter_queryset(self, queryset: QuerySet[FineTunedModel]) -> QuerySet[FineTunedModel]:
        if self.action != "list":
            return queryset
        params = self.request.query_params
        base = params.get("base_model")
        if base is not None and not (base.isascii() and base.isdigit() and int(base) <= _MAX_ID):
            raise ServiceError("base_model must be a base model id.", field="base_model")
        return services.filter_models(
            queryset,
            name=params.get("name"),
            search=params.get("search"),
            base_model=int(base) if base else None,
            latest_only=_flag(params.get("latest"), "latest"),
        )

    @extend_schema(request=FineTunedModelUpdateSerializer, responses=FineTunedModelDetailSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        model = self.get_object()
        data = FineTunedModelUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.update_model(model, **data.validated_data)
        return Response(FineTunedModelDetailSerializer(self.get_queryset().get(pk=model.pk)).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.delete_model(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=FineTunedModelSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def versions(self, request: Request, pk: str) -> Response:
        """Every version of this model's name, newest first."""
        return Response(FineTunedModelSerializer(services.versions_of(self.get_object()), many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("other", int, required=True, description="The model to compare with")],
        responses=OpenApiTypes.OBJECT,
    )
    @action(detail=True, methods=["get"])
    def compare(self, request: Request, pk: str) -> Response:
        """This model (`a`) and `other` (`b`) side by side: setup, hyperparameter and metric rows, dataset, eval
        report and loss curves."""
        a = self.get_object()
        other = request.query_params.get("other", "")
        if not other.isdigit():
            raise ServiceError("Give the model to compare with as ?other=<id>.", field="other")
        b = self.get_queryset().filter(pk=int(other)).first()
        if b is None:
            raise ServiceError("The other model was not found.", field="other", status_code=404)
        result = services.compare_models(a, b)
        result["a"]["model"] = FineTunedModelSerializer(a).data
        result["b"]["model"] = FineTunedModelSerializer(b).data
        return Response(result)

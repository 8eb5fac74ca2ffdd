"""Models API: the base-model catalogue and the user's fine-tuned models (the Models issue grows this)."""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import mixins, serializers, viewsets
from rest_framework.permissions import IsAuthenticated

from models_app.models import BaseModel, FineTunedModel


class BaseModelSerializer(serializers.ModelSerializer):
    class Meta:
        model = BaseModel
        fields = ["id", "name", "source", "repo_id", "architecture", "parameters", "context_length", "license",
                  "has_chat_template", "size_bytes", "status", "description"]


class FineTunedModelSerializer(serializers.ModelSerializer):
    base_model_name = serializers.CharField(source="base_model.name", read_only=True)

    class Meta:
        model = FineTunedModel
        fields = ["id", "name", "version", "base_model", "base_model_name", "job", "method", "weights", "metrics",
                  "hyperparameters", "tag", "notes", "created"]
        read_only_fields = ["id", "version", "base_model", "base_model_name", "job", "method", "weights", "metrics",
                            "hyperparameters", "created"]


class BaseModelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Models available for fine-tuning (shared by all users)."""

    serializer_class = BaseModelSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> QuerySet[BaseModel]:
        if getattr(self, "swagger_fake_view", False):
            return BaseModel.objects.none()
        BaseModel.objects.ensure_embedded()
        return BaseModel.objects.all()


class FineTunedModelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin,
                            viewsets.GenericViewSet):
    """The user's fine-tuned models."""

    serializer_class = FineTunedModelSerializer
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self) -> QuerySet[FineTunedModel]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user, no database
            return FineTunedModel.objects.none()
        return FineTunedModel.objects.filter(owner=self.request.user).select_related("base_model")

"""Shapes of the datasets API."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from datasets_app.models import Dataset, DatasetFile
from datasets_app.versions import FILE_FIELDS
from finetune.serializers import FastReadMixin, StrictInputMixin


class DatasetFileSerializer(FastReadMixin, serializers.ModelSerializer):
    class Meta:
        model = DatasetFile
        fields = list(FILE_FIELDS)


_MISSING = object()


class DatasetSerializer(FastReadMixin, serializers.ModelSerializer):
    files = serializers.SerializerMethodField()
    verdict = serializers.ChoiceField(
        choices=Dataset.Verdict.choices,
        allow_blank=True,
        read_only=True,
        help_text="Empty until the dataset is validated.",
    )
    root_id = serializers.SerializerMethodField()
    is_latest = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = [
            "id",
            "name",
            "status",
            "progress",
            "format",
            "format_override",
            "column_mapping",
            "version",
            "root_id",
            "parent_id",
            "is_latest",
            "row_count",
            "size_bytes",
            "original_filename",
            "verdict",
            "error",
            "files",
            "operation",
            "validation_settings",
            "created",
            "updated",
        ]
        read_only_fields = fields

    @extend_schema_field(DatasetFileSerializer(many=True))
    def get_files(self, obj: Dataset) -> list[dict[str, Any]]:
        """From the `files_json` annotation (versions.with_lineage_info) when the row has it, else the related rows."""
        files = getattr(obj, "files_json", _MISSING)
        if files is _MISSING:
            return DatasetFileSerializer(obj.files.all(), many=True).data
        return [{name: row[name] for name in FILE_FIELDS} for row in files or ()]

    def get_root_id(self, obj: Dataset) -> int:
        root = getattr(obj, "root_pk", None)  # annotated by versions.with_lineage_info
        if root is None:
            root = Dataset.objects.filter(lineage=obj.lineage).order_by("version").values_list("pk", flat=True).first()
        return int(root or obj.pk)

    def get_is_latest(self, obj: Dataset) -> bool:
        newest = getattr(obj, "newest_version", None)
        if newest is None:
            return not Dataset.objects.filter(lineage=obj.lineage, version__gt=obj.version).exists()
        return obj.version >= newest


class DatasetUploadSerializer(serializers.Serializer):
    file = serializers.ListField(
        child=serializers.FileField(), allow_empty=False, help_text="One or more files (repeat the field)."
    )
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    format = serializers.CharField(required=False, allow_blank=True, help_text="auto (default) or a format name")
    column_mapping = serializers.CharField(required=False, allow_blank=True, help_text="JSON object")


class DatasetUpdateSerializer(StrictInputMixin, serializers.Serializer):
    name = serializers.CharField(required=False, max_length=200)
    format = serializers.CharField(required=False, allow_blank=True)
    column_mapping = serializers.JSONField(required=False, allow_null=True)


class ValidateSerializer(StrictInputMixin, serializers.Serializer):
    base_model = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=2**63 - 1,
        help_text="An id from GET /api/models/base/ that you may use: its tokenizer measures the rows.",
    )
    max_length = serializers.IntegerField(required=False, min_value=16, max_value=131072)
    format = serializers.CharField(required=False, allow_blank=True)
    column_mapping = serializers.JSONField(required=False, allow_null=True)


class PreprocessSerializer(StrictInputMixin, serializers.Serializer):
    steps = serializers.ListField(child=serializers.DictField(), allow_empty=False)
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)


class SplitSerializer(StrictInputMixin, serializers.Serializer):
    validation_ratio = serializers.FloatField(
        default=0.1, min_value=0.001, max_value=0.5, help_text="The share of rows held out for validation."
    )
    seed = serializers.IntegerField(default=42)

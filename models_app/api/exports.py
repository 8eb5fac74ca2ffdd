"""Models API: exports (adapter / merged / verified GGUF), signed downloads and Ollama imports (shared/API.md, Models).

Every lookup is scoped to the requesting user: another user's model, export or import answers 404. The one
exception is a signed download link (``?sig=``), which works without a session for its short lifetime.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import FileResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from finetune import artifacts
from finetune.serializers import StrictInputMixin
from models_app import exports, ollama
from models_app.models import ModelExport, OllamaImport

# --- serializers ------------------------------------------------------------------------------------------------------


class ExportRequestSerializer(StrictInputMixin, serializers.Serializer):
    format = serializers.ChoiceField(
        choices=exports.FORMATS,
        help_text="adapter | merged | gguf",
        error_messages={
            "invalid_choice": f"Unknown export format '{{input}}'; choose one of: {', '.join(exports.FORMATS)}."
        },
    )
    quantization = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=16,
        help_text="GGUF only: F16 | Q8_0 | Q6_K | Q5_K_M | Q4_K_M, any case (default Q8_0); empty for the other "
        "formats",
    )

    def validate_quantization(self, value: str) -> str:
        quant = exports.normalize_quantization(value)
        if quant and quant not in exports.QUANTIZATIONS:
            raise serializers.ValidationError(
                f"GGUF quantization '{value}' is not supported; choose one of: "
                f"{', '.join(q.upper() for q in exports.QUANTIZATIONS)}."
            )
        return quant


class ModelExportSerializer(serializers.ModelSerializer):
    model_name = serializers.CharField(source="model.name", read_only=True)
    model_version = serializers.IntegerField(source="model.version", read_only=True)
    file_name = serializers.SerializerMethodField()
    verified = serializers.SerializerMethodField()
    download = serializers.SerializerMethodField()

    class Meta:
        model = ModelExport
        fields = [
            "id",
            "model",
            "model_name",
            "model_version",
            "format",
            "quantization",
            "status",
            "progress",
            "stage",
            "error",
            "file_name",
            "size_bytes",
            "sha256",
            "verified",
            "verification",
            "download",
            "created",
            "started",
            "finished",
        ]
        read_only_fields = fields

    def get_file_name(self, obj: ModelExport) -> str:
        return exports.export_file_name(obj)

    def get_verified(self, obj: ModelExport) -> bool:
        """True for a GGUF that passed the llama.cpp verification (adapter/merged: always false)."""
        return obj.format == ModelExport.Format.GGUF and bool((obj.verification or {}).get("passed"))

    def get_download(self, obj: ModelExport) -> str | None:
        """Where the owner asks for a signed link (null until the export succeeded)."""
        return f"/api/models/exports/{obj.pk}/download/" if obj.status == "succeeded" else None


class DownloadLinkSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="Signed URL streaming the file; works without a session until it expires.")
    expires_in = serializers.IntegerField(help_text="Seconds the link stays valid (EXPORT_LINK_TTL_S).")
    expires_at = serializers.DateTimeField()
    file_name = serializers.CharField()
    size_bytes = serializers.IntegerField()
    sha256 = serializers.CharField()


class OllamaImportRequestSerializer(StrictInputMixin, serializers.Serializer):
    name = serializers.CharField(max_length=200, help_text="Ollama model name, e.g. 'my-model' or 'my-model:v2'.")
    quantization = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=16,
        help_text="The GGUF Ollama runs: F16 | Q8_0 | Q6_K | Q5_K_M | Q4_K_M (default: the server's setting)",
    )

    def validate_quantization(self, value: str) -> str:
        return ExportRequestSerializer().validate_quantization(value)


class OllamaImportSerializer(serializers.ModelSerializer):
    model_name = serializers.CharField(source="model.name", read_only=True)
    model_version = serializers.IntegerField(source="model.version", read_only=True)
    run_command = serializers.CharField(read_only=True)

    class Meta:
        model = OllamaImport
        fields = [
            "id",
            "model",
            "model_name",
            "model_version",
            "ollama_name",
            "quantization",
            "host",
            "status",
            "progress",
            "stage",
            "error",
            "run_command",
            "modelfile",
            "verification",
            "created",
            "started",
            "finished",
        ]
        read_only_fields = fields


# --- views -----------------------------------------------------------------------------------------------------------


class ExportCreateView(APIView):
    """Start an export of one of the user's models (or get back an identical one already made or under way)."""

    @extend_schema(request=ExportRequestSerializer, responses={202: ModelExportSerializer})
    def post(self, request: Request, pk: int) -> Response:
        data = ExportRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        export = exports.request_export(
            request.user, pk, data.validated_data["format"], data.validated_data.get("quantization") or ""
        )
        return Response(ModelExportSerializer(export).data, status=status.HTTP_202_ACCEPTED)


class ModelExportListView(generics.ListAPIView):
    """The exports of one of the user's models, newest first."""

    serializer_class = ModelExportSerializer

    def get_queryset(self) -> QuerySet[ModelExport]:
        if getattr(self, "swagger_fake_view", False):
            return ModelExport.objects.none()
        model = exports.get_owned_model(self.request.user, int(self.kwargs["pk"]))
        return exports.owned_exports(self.request.user).filter(model=model)


class ExportDetailView(generics.RetrieveAPIView):
    """One export: status, progress, error, and for a GGUF the verification report."""

    serializer_class = ModelExportSerializer
    lookup_url_kwarg = "export_id"

    def get_queryset(self) -> QuerySet[ModelExport]:
        if getattr(self, "swagger_fake_view", False):
            return ModelExport.objects.none()
        return exports.owned_exports(self.request.user)


class _SignedOrAuthenticated(BasePermission):
    """A signed link (``?sig=``) is checked by the view itself; without one the user must be signed in."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.query_params.get("sig"):
            return AllowAny().has_permission(request, view)
        return IsAuthenticated().has_permission(request, view)


class ExportDownloadView(APIView):
    """Owner: a short-lived signed URL for the file (JSON, or a redirect with ``?redirect=1``).
    Signed URL (``?sig=``): the file itself; an expired or forged signature answers 403."""

    permission_classes = [_SignedOrAuthenticated]

    @extend_schema(
        parameters=[
            OpenApiParameter("sig", OpenApiTypes.STR, description="Signature of a download link (streams the file)"),
            OpenApiParameter("redirect", OpenApiTypes.BOOL, description="Answer 302 to the signed URL instead"),
        ],
        responses={
            200: OpenApiResponse(DownloadLinkSerializer, description="The signed link (or, with sig, the file)"),
            302: OpenApiResponse(description="Redirect to the signed link (redirect=1)"),
            403: OpenApiResponse(description="Expired or invalid signed link"),
            404: OpenApiResponse(description="No such export for this user"),
            409: OpenApiResponse(description="The export is not ready"),
        },
    )
    def get(self, request: Request, export_id: int) -> HttpResponseBase:
        token = request.query_params.get("sig")
        if token:
            export = exports.resolve_download(export_id, token)
            direct = artifacts.presigned_download_url(
                export.file_key, exports.export_file_name(export), int(settings.EXPORT_LINK_TTL_S)
            )
            if direct:  # S3: the bytes come from the bucket, not through the web tier
                return HttpResponseRedirect(direct)
            response = FileResponse(
                default_storage.open(export.file_key, "rb"),
                as_attachment=True,
                filename=exports.export_file_name(export),
            )
            response["Cache-Control"] = "private, no-store"
            response["X-Content-SHA256"] = export.sha256
            return response
        export = get_object_or_404(exports.owned_exports(request.user), pk=export_id)
        link = exports.download_link(export, request.user)
        url = request.build_absolute_uri(link.pop("path"))
        if request.query_params.get("redirect") in ("1", "true", "yes"):
            return HttpResponseRedirect(url)
        return Response(DownloadLinkSerializer({"url": url, **link}).data)


class OllamaImportCreateView(APIView):
    """Import one of the user's models into the deployment's Ollama server (verified GGUF + Modelfile)."""

    @extend_schema(request=OllamaImportRequestSerializer, responses={202: OllamaImportSerializer})
    def post(self, request: Request, pk: int) -> Response:
        data = OllamaImportRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row = ollama.request_ollama_import(
            request.user, pk, data.validated_data["name"], quantization=data.validated_data.get("quantization") or None
        )
        return Response(OllamaImportSerializer(row).data, status=status.HTTP_202_ACCEPTED)


class ModelOllamaImportListView(generics.ListAPIView):
    """The Ollama imports of one of the user's models, newest first."""

    serializer_class = OllamaImportSerializer

    def get_queryset(self) -> QuerySet[OllamaImport]:
        if getattr(self, "swagger_fake_view", False):
            return OllamaImport.objects.none()
        model = exports.get_owned_model(self.request.user, int(self.kwargs["pk"]))
        return OllamaImport.objects.filter(owner=self.request.user, model=model).select_related("model")


class OllamaImportDetailView(generics.RetrieveAPIView):
    """One Ollama import: status, the Modelfile, the verification and the `ollama run` command."""

    serializer_class = OllamaImportSerializer
    lookup_url_kwarg = "import_id"

    def get_queryset(self) -> QuerySet[OllamaImport]:
        if getattr(self, "swagger_fake_view", False):
            return OllamaImport.objects.none()
        return OllamaImport.objects.filter(owner=self.request.user).select_related("model")


urlpatterns = [
    path("<int:pk>/export/", ExportCreateView.as_view(), name="model-export"),
    path("<int:pk>/exports/", ModelExportListView.as_view(), name="model-exports"),
    path("exports/<int:export_id>/", ExportDetailView.as_view(), name="export-detail"),
    path("exports/<int:export_id>/download/", ExportDownloadView.as_view(), name="export-download"),
    path("<int:pk>/ollama-import/", OllamaImportCreateView.as_view(), name="model-ollama-import"),
    path("<int:pk>/ollama-imports/", ModelOllamaImportListView.as_view(), name="model-ollama-imports"),
    path("ollama-imports/<int:import_id>/", OllamaImportDetailView.as_view(), name="ollama-import-detail"),
]

"""Models API: playground routes. `POST <id>/generate/` (an owned fine-tuned model) and `POST base/<id>/generate/`
(a base model) answer one chat request in full; the websocket `/ws/models/<id>/generate/` streams it."""

from __future__ import annotations

from django.urls import URLPattern, path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from finetune.serializers import StrictInputMixin
from models_app import playground


class _Message(StrictInputMixin, serializers.Serializer):
    role = serializers.ChoiceField(
        choices=["system", "user", "assistant", "tool"],
        help_text="`tool`: a tool's result, after the assistant turn that called it (needs `tools`); the conversation "
        "may end with one, and the model answers it.",
    )
    content = serializers.CharField()


class GenerateRequestSerializer(StrictInputMixin, serializers.Serializer):
    """Documentation of the body; `models_app.inference.parse_request` checks it (for REST and websocket alike)."""

    messages = _Message(many=True, allow_empty=False)
    system = serializers.CharField(required=False, allow_blank=True)
    max_new_tokens = serializers.IntegerField(required=False, min_value=1, max_value=1024, default=256)
    temperature = serializers.FloatField(required=False, min_value=0, max_value=2, default=0.7)
    top_p = serializers.FloatField(required=False, min_value=0, max_value=1, default=0.9)
    compare_with_base = serializers.BooleanField(required=False, default=False)
    tools = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        max_length=32,
        help_text=(
            "Optional tool (function) specs offered to the model: `{name, description, parameters}` or "
            '`{"type": "function", "function": {...}}`; at most 32, 32,000 characters of JSON. Rendered with the '
            "model's own tool template, or the documented fallback (Qwen/Hermes `<tools>` block)."
        ),
    )


_ANSWER = inline_serializer(
    "GenerateAnswer",
    {
        "text": serializers.CharField(),
        "tokens": serializers.IntegerField(),
        "duration_s": serializers.FloatField(),
        "prompt_tokens": serializers.IntegerField(),
        "tool_calls": serializers.ListField(
            child=serializers.DictField(),
            required=False,
            help_text='With `tools`: the `<tool_call>` blocks of the answer, as `{"type": "function", '
            '"function": {"name", "arguments": {...}}}` (absent when the answer calls no tool).',
        ),
        "base": serializers.DictField(required=False),
    },
)


class _GenerateView(APIView):
    kind = "model"

    @extend_schema(request=GenerateRequestSerializer, responses=_ANSWER)
    def post(self, request: Request, pk: int) -> Response:
        return Response(playground.generate_now(request.user, playground.Target(self.kind, pk), request.data))


class GenerateView(_GenerateView):
    """One full answer from an owned fine-tuned model."""

    kind = "model"


class BaseGenerateView(_GenerateView):
    """One full answer from a base model."""

    kind = "base"


urlpatterns: list[URLPattern] = [
    path("<int:pk>/generate/", GenerateView.as_view(), name="model-generate"),
    path("base/<int:pk>/generate/", BaseGenerateView.as_view(), name="base-model-generate"),
]

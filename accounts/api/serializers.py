"""Shapes of the accounts API (serializers check shape; services apply the rules)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts import services
from accounts.models import ApiToken, User
from finetune.serializers import StrictInputMixin


class RegisterSerializer(StrictInputMixin, serializers.Serializer):
    username = serializers.RegexField(
        r"^[\w.@+-]+\Z",
        max_length=150,
        min_length=3,
        error_messages={"invalid": "Use letters, digits and @ . + - _ only."},
    )
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(write_only=True, max_length=256, style={"input_type": "password"})


class LoginSerializer(StrictInputMixin, serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(write_only=True, max_length=256, style={"input_type": "password"})


class UserSerializer(serializers.ModelSerializer):
    has_hf_token = serializers.BooleanField(read_only=True)
    has_wandb_key = serializers.BooleanField(read_only=True)
    has_webhook_secret = serializers.BooleanField(read_only=True)
    webhook_url = serializers.CharField(read_only=True, help_text="The job notifications' webhook (empty: none).")
    quotas = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "display_name",
            "has_hf_token",
            "hf_token_last4",
            "hf_username",
            "has_wandb_key",
            "wandb_key_last4",
            "is_staff",
            "date_joined",
            "quotas",
            "usage",
            "notify_email",
            "webhook_url",
            "has_webhook_secret",
        ]
        read_only_fields = fields

    def get_quotas(self, obj: User) -> dict[str, Any]:
        return obj.quotas()

    def get_usage(self, obj: User) -> dict[str, Any]:
        return services.usage(obj)


class ProfileUpdateSerializer(StrictInputMixin, serializers.Serializer):
    display_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    email = serializers.EmailField(max_length=254, required=False)
    # Notifications: the URL is checked by the service (http/https only); an empty value turns it off.
    notify_email = serializers.BooleanField(required=False)
    webhook_url = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    webhook_secret = serializers.CharField(
        max_length=256,
        required=False,
        allow_blank=True,
        write_only=True,
        help_text="HMAC-SHA256 key for X-Finetune-Signature; never returned.",
    )


class QuotaSummarySerializer(serializers.Serializer):
    quotas = serializers.DictField(help_text="Effective limits (defaults overridden per user by operators).")
    usage = serializers.DictField(help_text="Current usage; monthly figures since the first of the month (UTC).")
    remaining = serializers.DictField()
    resets_at = serializers.DateTimeField()


class ChangePasswordSerializer(StrictInputMixin, serializers.Serializer):
    old_password = serializers.CharField(max_length=256, style={"input_type": "password"})
    new_password = serializers.CharField(max_length=256, style={"input_type": "password"})


class HfTokenInSerializer(StrictInputMixin, serializers.Serializer):
    # Sent to the Hub in an HTTP header: printable ASCII, no spaces (anything else could never be a token).
    token = serializers.RegexField(
        r"^[!-~]+$",
        max_length=512,
        write_only=True,
        trim_whitespace=True,
        error_messages={"invalid": "A Hugging Face token is printable ASCII text."},
    )


class HfTokenStatusSerializer(serializers.Serializer):
    present = serializers.BooleanField()
    last4 = serializers.CharField()
    hf_username = serializers.CharField()


class HfTokenSavedSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    hf_username = serializers.CharField()
    last4 = serializers.CharField()


class WandbKeyInSerializer(StrictInputMixin, serializers.Serializer):
    key = serializers.RegexField(
        r"^[!-~]+$",
        min_length=40,
        max_length=256,
        write_only=True,
        trim_whitespace=True,
        error_messages={"invalid": "A Weights & Biases API key is printable ASCII text."},
    )


class WandbKeyStatusSerializer(serializers.Serializer):
    present = serializers.BooleanField()
    last4 = serializers.CharField()


class ApiTokenSerializer(StrictInputMixin, serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created", "last_used"]
        read_only_fields = ["id", "prefix", "created", "last_used"]


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    key = serializers.CharField(read_only=True, help_text="Shown once; store it now.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "key"]

"""Base models from the Hugging Face Hub (search, model info, download into the shared cache, fit estimate) and pushes
of fine-tuned models to the Hub.

Every Hub call goes through `huggingface_hub.HfApi(endpoint=settings.HF_ENDPOINT, token=<the user's own token>)`:
there is never a process-wide login, and the token is decrypted only for the call. `client` holds the client and the
error messages, `catalogue` the base-model side, `push` the Push to Hugging Face workflow.
"""

from __future__ import annotations

from models_app.models import EMBEDDED_PUBLIC_ID

from .catalogue import (
    DOWNLOAD_IGNORE,
    DOWNLOAD_PATTERNS,
    FIT_METHODS,
    HubModelDetails,
    HubModelSummary,
    fit_estimate,
    model_info,
    params_from_config,
    request_download,
    run_download,
    search_models,
)
from .client import NO_TOKEN_MESSAGE, HubFailure, check_repo_id, describe_hub_error, hub_client, user_token
from .push import (
    PushFailed,
    prepare_push_folder,
    request_push,
    retry_push,
    run_push,
    user_pushes,
)

__all__ = [
    "DOWNLOAD_IGNORE",
    "DOWNLOAD_PATTERNS",
    "EMBEDDED_PUBLIC_ID",
    "FIT_METHODS",
    "NO_TOKEN_MESSAGE",
    "HubFailure",
    "HubModelDetails",
    "HubModelSummary",
    "PushFailed",
    "check_repo_id",
    "describe_hub_error",
    "fit_estimate",
    "hub_client",
    "model_info",
    "params_from_config",
    "prepare_push_folder",
    "request_download",
    "request_push",
    "retry_push",
    "run_download",
    "run_push",
    "search_models",
    "user_pushes",
    "user_token",
]

"""Which base models a user may see and use.

The catalogue is shared, but a Hub model downloaded with one user's token may come from a private or gated repo:
such a row is listed for, and usable by, only the users whose own Hugging Face token can read the repo on the Hub
now. The Hub is asked at use time with the user's token and its answer kept in the cache for HF_ACCESS_CACHE_S per
(user, token, repo). Public Hub repos, the embedded default and uploaded models stay shared. A row the user may not
use answers like another user's object: 404 (or, in a form field, "not found").

Every entry point goes through here: the base-model list/detail/fit endpoints, the playground's base target,
training job create and estimate, and datasets_app's tokenizer choice (`tokenizer_source`).
"""

from __future__ import annotations

import hashlib
import logging
from contextlib import AbstractContextManager
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q, QuerySet

from accounts.services import get_hf_token
from finetune.exceptions import ServiceError

from .models import EMBEDDED_REPO_ID, BaseModel

logger = logging.getLogger(__name__)

_UNSURE_CACHE_S = 30  # a Hub that could not answer (outage, rate limit): denied, and asked again soon
_CONFIG = "config.json"  # every catalogue row has one; reading its metadata tells whether a gate lets the user in


def _restricted_rows() -> Q:
    """Rows that need the Hub's word (see BaseModel.restricted)."""
    return Q(source=BaseModel.Source.HUB) & (Q(private__isnull=True) | Q(private=True) | Q(gated=True))


def _cache_key(user_id: int, token: str, repo_id: str) -> str:
    digest = hashlib.sha256(f"{token}\0{repo_id}".encode()).hexdigest()[:32]
    return f"base-model-access:{user_id}:{digest}"


def can_use(user: Any, base: BaseModel) -> bool:
    """True when `user` may see and use catalogue row `base` (a restricted one: when their token reads it)."""
    if not base.restricted:
        return True
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    token = get_hf_token(user)
    if not token:
        return False
    key = _cache_key(user.pk, token, base.repo_id)
    known = cache.get(key)
    if known is not None:
        return bool(known)
    allowed = _hub_allows(token, base)
    cache.set(key, bool(allowed), settings.HF_ACCESS_CACHE_S if allowed is not None else _UNSURE_CACHE_S)
    return bool(allowed)


def _hub_allows(token: str, base: BaseModel) -> bool | None:
    """Whether the token reads the repo on the Hub now (None: the Hub gave no answer). A private repo the token
    cannot see is a 404 (401) from model info; a gated one answers model info but refuses its files (403 GatedRepo).
    What model info says about the repo is recorded on the row (rows from before the flags were kept get them)."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    from .hub.client import hub_client

    api = hub_client(token)
    try:
        info = api.model_info(base.repo_id)
        _record_flags(base, private=bool(info.private), gated=bool(info.gated))
        if info.gated and not api.file_exists(base.repo_id, _CONFIG):
            return False
    except (GatedRepoError, RepositoryNotFoundError):
        return False
    except HfHubHTTPError as exc:
        code = exc.response.status_code if exc.response is not None else None
        if code in (401, 403, 404):
            return False
        logger.warning(
            "base model %s: the Hub did not say whether a user may read %s (HTTP %s)", base.pk, base.repo_id, code
        )
        return None
    except Exception as exc:  # network and the like: deny for now, ask again soon
        logger.warning("base model %s: could not ask the Hub about %s (%s)", base.pk, base.repo_id, type(exc).__name__)
        return None
    return True


def _record_flags(base: BaseModel, *, private: bool, gated: bool) -> None:
    if base.private is not private or base.gated is not gated:
        BaseModel.objects.filter(pk=base.pk).update(private=private, gated=gated)
        base.private, base.gated = private, gated


def usable_base_models(user: Any) -> QuerySet[BaseModel]:
    """The catalogue as `user` sees it: shared rows, and the restricted ones their own token can read."""
    rows = list(BaseModel.objects.filter(Q(repo_id=EMBEDDED_REPO_ID) | _restricted_rows()))  # one query for both
    if not any(row.repo_id == EMBEDDED_REPO_ID for row in rows):
        BaseModel.objects.ensure_embedded()  # made if missing (e.g. after a database flush)
    hidden = [row.pk for row in rows if row.restricted and not can_use(user, row)]
    return BaseModel.objects.exclude(pk__in=hidden)


def find_usable_base_model(user: Any, pk: Any, *, available: bool = False) -> BaseModel | None:
    """Catalogue row `pk` when `user` may use it (and, with `available`, it is downloaded), else None."""
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        return None
    rows = BaseModel.objects.filter(pk=pk)
    if available:
        rows = rows.filter(status=BaseModel.Status.AVAILABLE)
    base = rows.first()
    return base if base is not None and can_use(user, base) else None


def get_usable_base_model(user: Any, pk: Any) -> BaseModel:
    """Catalogue row `pk` when `user` may use it; a 404 otherwise (as for another user's object)."""
    base = find_usable_base_model(user, pk)
    if base is None:
        raise ServiceError("Not found.", status_code=404)
    return base


def tokenizer_source(user_id: int, base_model_id: int) -> tuple[str, AbstractContextManager[str]] | None:
    """datasets_app's lookup (`datasets_app.base_models.register_tokenizer_source`): a downloaded base model the user
    may use -> (its public id, its tokenizer folder), else None. Only a model already in the artifact store (or the
    embedded one): the web process never downloads from the Hub."""
    from accounts.models import User

    from .artifacts import base_model_folder

    user = User.objects.filter(pk=user_id, is_active=True).first()
    base = find_usable_base_model(user, base_model_id, available=True) if user is not None else None
    if base is None or (base.source != BaseModel.Source.EMBEDDED and not base.artifact_sha256):
        return None
    return base.public_id, base_model_folder(base)

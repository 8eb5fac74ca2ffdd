"""The base model whose tokenizer validates and previews a dataset: a catalogue id the user may use, nothing else
(never a free string reaching the tokenizer loader: a Hub id would make the web process download it, a path would
read the server's files).

The catalogue belongs to models_app, which sits above this app in the layers, so models_app registers the lookup at
start-up (``register_tokenizer_source`` in ``ModelsAppConfig.ready``). With nothing registered no base model can be
chosen; no choice means the embedded default, which needs no catalogue.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

from finetune.exceptions import ServiceError

# (user id, catalogue id) -> (the model's name for reports, a context manager that yields, for the duration of the
# block, the local folder to load its tokenizer from); None when there is no such row, it is not ready, or the user
# may not use it.
TokenizerSource = Callable[[int, int], "tuple[str, AbstractContextManager[str]] | None"]
_source: TokenizerSource | None = None


class Tokenizer(NamedTuple):
    """The tokenizer a pass uses: its folder, and the catalogue name reports show (None: the embedded default)."""

    folder: str
    name: str | None = None


MAX_ID = 2**63 - 1  # the catalogue's ids are big integers
FIELD = "base_model"


def register_tokenizer_source(source: TokenizerSource | None) -> TokenizerSource | None:
    """Set the catalogue lookup (models_app calls it from its AppConfig.ready); returns the one it replaces."""
    global _source
    previous, _source = _source, source
    return previous


def parse_base_model(value: Any) -> int | None:
    """A catalogue id from an API value (an integer, or its decimal digits in a query string); None when absent.
    Anything else is a 400 naming the field."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) <= 19:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise ServiceError(
            "base_model must be the id of a base model from the catalogue (GET /api/models/base/).", field=FIELD
        )
    return value


def _lookup(user_id: int, base_model_id: int) -> tuple[str, AbstractContextManager[str]] | None:
    return _source(user_id, base_model_id) if _source is not None else None


def check_base_model(user_id: int, value: Any) -> int | None:
    """The catalogue id ``value`` names when the user may use it (None when absent), else a 400 naming the field."""
    base_model_id = parse_base_model(value)
    if base_model_id is not None and _lookup(user_id, base_model_id) is None:
        raise ServiceError(
            f"Base model {base_model_id} is not in the catalogue or is not available to you; choose "
            "one from GET /api/models/base/.",
            field=FIELD,
        )
    return base_model_id


@contextlib.contextmanager
def chosen_tokenizer(user_id: int, base_model_id: Any) -> Iterator[Tokenizer]:
    """The tokenizer of the user's choice (None: the embedded default), for the block's duration.

    The choice was checked when it was made; one that is no longer available (removed, or no longer the user's to
    use) is a ServiceError naming it. So is a free string stored before choices were checked, unless it names the
    embedded model.
    """
    from training.engine.embedded import EMBEDDED_MODEL_ID, is_embedded, resolve_model_path

    if base_model_id in (None, "") or (isinstance(base_model_id, str) and is_embedded(base_model_id)):
        yield Tokenizer(resolve_model_path(EMBEDDED_MODEL_ID))
        return
    chosen = base_model_id if isinstance(base_model_id, int) and not isinstance(base_model_id, bool) else None
    found = _lookup(user_id, chosen) if chosen is not None else None
    if found is None:
        which = f" ({chosen})" if chosen is not None else ""
        raise ServiceError(
            f"The base model chosen for this dataset{which} is no longer available to you; re-validate "
            "with another one from GET /api/models/base/.",
            field=FIELD,
        )
    name, folder = found
    with folder as path:
        yield Tokenizer(str(path), name)

"""Dataset reading, format detection/conversion, chat templates and label masking (shared by the engine and the
datasets app). Django-free; heavy libraries (pyarrow, transformers) are imported only when used.

Modules: ``readers`` (sniffing and ``iter_records``; ``fileio``, ``json_reader`` and ``tabular`` per format),
``formats`` and ``loading`` (canonical examples; ``messages`` the shared field and turn checks,
``preference_formats`` the pair and KTO converters), ``templates`` (chat templates), ``spans`` and ``tokenize``
(assistant-only labels), ``lengths`` (token counts), ``preview`` (trained/untrained pieces, text chunks).
"""

from __future__ import annotations

from .formats import (
    EXPECTED_COLUMNS,
    DatasetFormat,
    apply_column_mapping,
    detect_format,
    get_path,
    is_preference,
    is_tool_format,
    is_unpaired_preference,
    parse_format,
    to_canonical,
    validate_column_mapping,
)
from .lengths import TextCounter, length_stats, preference_lengths, token_lengths
from .loading import DEFAULT_MAX_ROW_ERRORS, LoadedData, RowError, load_examples, sha256_files
from .preference_formats import split_hh_transcript
from .preview import Segment, chunk_text, preview_segments, render_segments
from .readers import DEFAULT_MAX_BYTES, OnBadLine, display_name, iter_records, record_unit
from .templates import (
    CHAT_TEMPLATES,
    TEMPLATE_NAMES,
    TOOL_FALLBACK_TEMPLATE,
    ChatRenderer,
    end_of_turn_token,
    render_chat,
    resolve_chat_template,
)
from .tokenize import (
    IGNORE_INDEX,
    LabelReport,
    TokenizedExample,
    as_columns,
    build_sft_dataset,
    check_labels,
    pack_examples,
    tokenize_conversation,
    tokenize_example,
    tokenize_text,
    wants_packing,
)

__all__ = [
    "CHAT_TEMPLATES",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ROW_ERRORS",
    "EXPECTED_COLUMNS",
    "IGNORE_INDEX",
    "TEMPLATE_NAMES",
    "TOOL_FALLBACK_TEMPLATE",
    "ChatRenderer",
    "DatasetFormat",
    "LabelReport",
    "LoadedData",
    "OnBadLine",
    "RowError",
    "Segment",
    "TextCounter",
    "TokenizedExample",
    "apply_column_mapping",
    "as_columns",
    "build_sft_dataset",
    "check_labels",
    "chunk_text",
    "detect_format",
    "display_name",
    "end_of_turn_token",
    "get_path",
    "is_preference",
    "is_tool_format",
    "is_unpaired_preference",
    "iter_records",
    "length_stats",
    "load_examples",
    "pack_examples",
    "parse_format",
    "preference_lengths",
    "preview_segments",
    "record_unit",
    "render_chat",
    "wants_packing",
    "render_segments",
    "resolve_chat_template",
    "sha256_files",
    "split_hh_transcript",
    "to_canonical",
    "token_lengths",
    "tokenize_conversation",
    "tokenize_example",
    "tokenize_text",
    "validate_column_mapping",
]

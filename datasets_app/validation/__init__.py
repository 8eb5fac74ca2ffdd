"""Dataset validation, preview, statistics and preprocessing as plain functions on files (no Django, no ORM).

Reading, format detection, conversion, chat templates and token counting come from ``training.engine.data``, so the
datasets pages and the trainer see the same rows.
"""

from __future__ import annotations

from .preprocess import OPS, StepError, preprocess, split
from .preview import preview
from .report import validate_files
from .rows import ReadLimits, read_limits
from .sniff import ContentMismatch, sniff_content
from .stats import statistics
from .tokenizer_cache import get_tokenizer

__all__ = [
    "OPS",
    "ContentMismatch",
    "ReadLimits",
    "StepError",
    "get_tokenizer",
    "preprocess",
    "preview",
    "read_limits",
    "sniff_content",
    "split",
    "statistics",
    "validate_files",
]

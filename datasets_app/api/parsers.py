"""A multipart parser that refuses dangerous file names instead of silently rewriting them."""

from __future__ import annotations

import unicodedata
from typing import Any

from django.conf import settings
from django.core.exceptions import TooManyFilesSent
from django.http.multipartparser import MultiPartParser as DjangoMultiPartParser
from django.http.multipartparser import MultiPartParserError
from rest_framework.exceptions import ParseError
from rest_framework.parsers import DataAndFiles
from rest_framework.parsers import MultiPartParser as DrfMultiPartParser


class UnsafeFileName(MultiPartParserError):
    """A file name with a path, a NUL byte or invisible control/bidirectional characters."""


def check_file_name(name: str) -> None:
    """Raise UnsafeFileName for names a user should rename before uploading."""
    if "\x00" in name:
        raise UnsafeFileName("The file name contains a NUL byte. Rename the file and upload it again.")
    if "/" in name or "\\" in name or name in {".", ".."} or name.startswith(".."):
        raise UnsafeFileName("The file name contains a path. Upload the file by its plain name.")
    bad = [c for c in name if unicodedata.category(c) in {"Cc", "Cf"}]
    if bad:
        codes = ", ".join(sorted({f"U+{ord(c):04X}" for c in bad}))
        raise UnsafeFileName(
            f"The file name contains invisible control or right-to-left characters ({codes}). Rename the file."
        )
    if len(name) > 255:
        raise UnsafeFileName("The file name is longer than 255 characters. Rename the file.")


class _StrictDjangoParser(DjangoMultiPartParser):
    def sanitize_file_name(self, file_name: str) -> str | None:
        import html

        check_file_name(html.unescape(file_name))
        return super().sanitize_file_name(file_name)


class StrictMultiPartParser(DrfMultiPartParser):
    """DRF's multipart parser, with file names checked rather than rewritten."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> DataAndFiles:
        parser_context = parser_context or {}
        request = parser_context["request"]
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        meta = request.META.copy()
        meta["CONTENT_TYPE"] = media_type
        try:
            parser = _StrictDjangoParser(meta, stream, request.upload_handlers, encoding)
            data, files = parser.parse()
            if any("\x00" in key or any("\x00" in v for v in values) for key, values in data.lists()):
                raise ParseError("The request contains a NUL character (\\u0000), which no field accepts.")
            return DataAndFiles(data, files)
        except TooManyFilesSent:
            raise ParseError(
                f"Too many files at once: upload at most {settings.DATASET_MAX_FILES} files per dataset."
            ) from None
        except UnsafeFileName as exc:
            raise ParseError(str(exc)) from None
        except MultiPartParserError as exc:
            raise ParseError(f"The upload could not be read: {exc}") from None

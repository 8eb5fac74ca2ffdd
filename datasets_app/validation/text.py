"""Text checks and cleaning shared by validation and preprocessing: duplicate keys, control characters, mojibake,
unicode and whitespace normalisation. Cheap byte-level operations first; regexes only where a pre-filter hit."""

from __future__ import annotations

import re
import string
import unicodedata

# Bytes removed before hashing for "normalized" duplicates: ASCII punctuation and whitespace (case is folded first).
_NORM_DELETE = (string.punctuation + string.whitespace).encode()
# Common non-ASCII punctuation and spaces (as UTF-8), removed from non-ASCII rows before hashing.
_NORM_UNICODE = re.compile(
    "|".join(
        re.escape(c)
        for c in "\u201c\u201d\u2018\u2019\u2026\u2013\u2014\u00ab\u00bb\u00bf\u00a1\u00a0\u2022\u00b7\u3001\u3002"
    ).encode()
)
# C0 controls except \t \n \r, and DEL; C1 controls (U+0080-U+009F) are C2 80-9F in UTF-8.
_ASCII_CONTROL = bytes([*range(0, 9), 11, 12, *range(14, 32), 127])
_C1_BYTES = re.compile(rb"\xc2[\x80-\x9f]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# UTF-8 read as cp1252/latin-1: a lead byte (Â Ã Ä Å Æ Ç ... or â for 3-byte sequences) followed by a continuation
# byte shown as its cp1252/latin-1 character; the replacement character is counted too.
_CP1252_HIGH = "\u20ac\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u017d\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u017e\u0178"
_CONT = f"[\\x80-\\xbf{_CP1252_HIGH}]"
_MOJIBAKE = re.compile(f"[\\xc2-\\xdf]{_CONT}|[\\xe0-\\xef]{_CONT}{_CONT}|\ufffd")
# The same on UTF-8 bytes: "Â".."ï" are C3 82..C3 AF; a continuation character is C2 80..BF or a cp1252 character.
_CONT_BYTES = b"(?:" + b"|".join([rb"\xc2[\x80-\xbf]", *(re.escape(c.encode()) for c in _CP1252_HIGH)]) + b")"
_MOJIBAKE_BYTES = re.compile(
    rb"\xc3[\x82-\x9f]" + _CONT_BYTES + rb"|\xc3[\xa0-\xaf]" + _CONT_BYTES + _CONT_BYTES + rb"|\xef\xbf\xbd"
)
_MOJIBAKE_RUN = re.compile(f"[\\xc2-\\xf4][\\x80-\\xbf{_CP1252_HIGH}]+")
_CP1252_BYTE = {ch: bytes([b]) for b in range(0x80, 0xA0) if (ch := bytes([b]).decode("cp1252", "ignore"))}
_BLANK_LINES = re.compile(r"\n(?:[ \t]*\n){3,}")  # more than two blank lines
_NEWLINES = re.compile(r"\r\n?")


def normalized_key(text: str, lower: bytes | None = None) -> int:
    """Hash of ``text`` with case folded and whitespace and punctuation removed (for near-duplicate detection);
    ``lower`` is ``text.lower().encode()`` when the caller already has it."""
    data = text.lower().encode() if lower is None else lower
    if len(data) != len(text):  # not ASCII: drop the common Unicode punctuation too
        data = _NORM_UNICODE.sub(b"", data)
    return hash(data.translate(None, _NORM_DELETE))


def has_control_chars(text: str, data: bytes | None = None) -> bool:
    """True when ``text`` holds control characters other than tab, newline and carriage return (``data``: the
    text's UTF-8 bytes when the caller already has them)."""
    raw = text.encode() if data is None else data
    if len(raw.translate(None, _ASCII_CONTROL)) != len(raw):
        return True
    return len(raw) != len(text) and _C1_BYTES.search(raw) is not None


def has_mojibake(text: str, data: bytes | None = None) -> bool:
    """True when ``text`` shows broken encoding: UTF-8 decoded as Latin-1/cp1252 ("Ã©", "â€™") or U+FFFD."""
    raw = text.encode() if data is None else data
    return len(raw) != len(text) and _MOJIBAKE_BYTES.search(raw) is not None


def _redecode(match: re.Match[str]) -> str:
    run = match.group()
    raw = bytearray()
    for ch in run:
        code = ord(ch)
        if code < 0x100:
            raw.append(code)
        elif ch in _CP1252_BYTE:
            raw += _CP1252_BYTE[ch]
        else:
            return run
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return run


def fix_mojibake(text: str) -> str:
    """Undo the common UTF-8-read-as-cp1252/Latin-1 damage run by run; runs that do not decode stay as they are."""
    if text.isascii() or not _MOJIBAKE.search(text):
        return text
    return _MOJIBAKE_RUN.sub(_redecode, text)


def normalize_unicode(text: str) -> str:
    """Fix mojibake, normalise line endings to \\n, apply NFC and drop control characters except \\n and \\t."""
    out = fix_mojibake(text)
    if "\r" in out:
        out = _NEWLINES.sub("\n", out)
    if not out.isascii():
        out = unicodedata.normalize("NFC", out)
    if has_control_chars(out):
        out = _CONTROL.sub("", out)
    return out


def strip_whitespace(text: str) -> str:
    """Trim the ends and collapse runs of more than two blank lines into two."""
    out = text.strip()
    if "\n\n\n" in out or "\n \n" in out or "\n\t\n" in out:
        out = _BLANK_LINES.sub("\n\n\n", out)
    return out

"""PII and secret detection and redaction: emails, phone numbers, credit-card numbers (Luhn), IP addresses, API keys.

Everything runs on the UTF-8 bytes of the text (bytes regexes are several times faster than str ones and every
pattern is ASCII). Regexes are compiled once, and each runs only behind a cheap pre-filter: '@' for emails, enough
digits for cards (>= 13) and phones (>= 8), a literal ".d.d." for IPv4, a 16+ character token run for prefixed keys,
a keyword for ``api_key=...`` assignments.
"""

from __future__ import annotations

import ipaddress
import re

KINDS: tuple[str, ...] = ("email", "phone", "credit_card", "ip_address", "secret")
LABELS: dict[str, str] = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "credit_card": "[CREDIT_CARD]",
    "ip_address": "[IP_ADDRESS]",
    "secret": "[SECRET]",
}
DESCRIPTIONS: dict[str, str] = {
    "email": "email addresses",
    "phone": "phone numbers",
    "credit_card": "credit-card numbers",
    "ip_address": "IP addresses",
    "secret": "API keys or secrets",
}

Span = tuple[str, int, int]

_DIGITS = b"0123456789"
_LOCAL_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_EMAIL_DOMAIN = re.compile(
    rb"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*"
    rb"\.[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
# Two digits, then digits and separators, then a digit: where a phone or card number can be.
_NUMBERISH = re.compile(rb"\d\d[\d(). \t-]{5,}\d")
_CARD = re.compile(rb"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_PHONE = re.compile(
    rb"(?<![\w+])(?:\+\d{1,3}[ \t.-]?)?(?:\(\d{3}\)|\d{3})[ \t.-]?\d{3}[ \t.-]\d{4}(?!\w)"  # (555) 123-4567
    rb"|(?<![\w+])\+\d{1,3}(?:[ \t.-]?\(?\d{1,5}\)?){2,5}(?!\w)"  # +44 20 7946 0958, +33 1 23 45 67 89
)
_IPV4_HINT = re.compile(rb"\.\d{1,3}\.\d{1,3}\.\d")
_IPV4 = re.compile(rb"(?<![\d.])\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?!\d|\.\d)")
_IPV6_HINT = re.compile(rb"::|:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:")
_IPV6 = re.compile(rb"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# Prefilters made of bytes.translate + one substring test (C speed, no regex scan):
# - phones and cards: digits become "9", separators "s", the rest "x"; a regex with a literal first character then
#   finds runs of >= 9 digits/separators starting and ending with a digit ("555-123-4567" -> "999s999s9999");
# - prefixed keys: a run of >= 20 characters of [A-Za-z0-9_-] (every key format below is at least that long).
_NUM_MARK = bytes(
    ord("9") if chr(b).isdigit() and b < 128 else ord("s") if b in b"()+.- \t" else ord("x") for b in range(256)
)
_NUM_CANDIDATE = re.compile(rb"9[9s]{7,}9")
_TOKEN_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_TOKEN_MARK = bytes(ord("a") if b in _TOKEN_CHARS else ord(" ") for b in range(256))
_TOKEN_RUN = b"a" * 20
_SECRET_TOKEN = re.compile(
    rb"(?:sk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{20,}"
    rb"|hf_[A-Za-z0-9]{30,}"
    rb"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    rb"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"
    rb"|xox[abprs]-[A-Za-z0-9-]{15,}"
    rb"|AIza[0-9A-Za-z_-]{35})"
)
_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----)?")
# "api_key = ...", "AWS_SECRET_ACCESS_KEY: ...", "password=...": matched on the lowercased bytes from the start of
# the identifier holding a keyword; the value is taken from the original bytes (same offsets).
_ASSIGN_KEYWORDS = (b"key", b"secret", b"token", b"passw", b"pwd")
_IDENT = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_-")
_SECRET_ASSIGN = re.compile(
    rb"(?:[a-z0-9]+[_-])*(?:api[_-]?key|api[_-]?secret|apikey|secret[_-]?key|access[_-]?key(?:[_-]?id)?"
    rb"|access[_-]?token|auth[_-]?token|bearer[_-]?token|client[_-]?secret|private[_-]?key|password|passwd|pwd"
    rb"|secret|token)[\"']?[ \t]*(?:=|:|=>)[ \t]*[\"']?([A-Za-z0-9_\-./+=~!@#$%^&*]{8,})"
)


def luhn_ok(digits: bytes | str) -> bool:
    """Luhn checksum of a string of ASCII digits."""
    data = digits.encode() if isinstance(digits, str) else digits
    total = 0
    for i, d in enumerate(reversed(data)):
        d -= 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _emails(data: bytes, out: list[Span]) -> None:
    for m in _EMAIL_DOMAIN.finditer(data):
        at = start = m.start()
        while start > 0 and data[start - 1] in _LOCAL_CHARS:
            start -= 1
        while start < at and data[start] == 46:  # a local part does not start with "."
            start += 1
        if start < at:
            out.append(("email", start, m.end()))


def _cards_and_phones(data: bytes, marks: bytes, out: list[Span]) -> None:
    size = len(data)
    for run in _NUM_CANDIDATE.finditer(marks):
        digits = marks.count(b"9", run.start(), run.end())
        if digits < 8:
            continue
        # Search inside the whole data so lookbehinds see the real neighbours: from two characters before the run
        # (an opening parenthesis or a "+") to one after it (for the lookaheads).
        start, end = max(run.start() - 2, 0), min(size, run.end() + 1)
        found: list[tuple[int, int]] = []
        if digits >= 13:
            for m in _CARD.finditer(data, start, end):
                number = m.group().replace(b" ", b"").replace(b"-", b"")
                if 13 <= len(number) <= 19 and number.count(number[:1]) != len(number) and luhn_ok(number):
                    found.append((m.start(), m.end()))
                    out.append(("credit_card", m.start(), m.end()))
        for m in _PHONE.finditer(data, start, end):
            s, e = m.start(), m.end()
            if any(s < ce and cs < e for cs, ce in found):
                continue
            value = m.group()
            n = len(value) - len(value.translate(None, _DIGITS))
            if 10 <= n <= 15 or (value.startswith(b"+") and 8 <= n <= 15):
                out.append(("phone", s, e))


def _ipv4(data: bytes, out: list[Span]) -> None:
    for m in _IPV4.finditer(data):
        parts = m.group().split(b".")
        if all(int(p) <= 255 and (p == b"0" or not p.startswith(b"0")) for p in parts):
            out.append(("ip_address", m.start(), m.end()))


def _ipv6(data: bytes, out: list[Span]) -> None:
    for m in _IPV6.finditer(data):
        value = m.group()
        if len(value) < 6 or value.count(b":") < 2 or len(value.translate(None, _DIGITS)) == len(value):
            continue
        try:
            ipaddress.IPv6Address(value.decode())
        except ValueError:
            continue
        out.append(("ip_address", m.start(), m.end()))


def _secret_value_ok(value: bytes) -> bool:
    has_digit = len(value.translate(None, _DIGITS)) != len(value)
    has_alpha = any(65 <= c <= 90 or 97 <= c <= 122 for c in value)
    mixed = value.lower() != value and value.upper() != value
    return (has_digit and has_alpha) or (len(value) >= 16 and (mixed or has_digit))


def _prefixed_secrets(data: bytes, marks: bytes, out: list[Span]) -> None:
    pos = marks.find(_TOKEN_RUN)
    while pos >= 0:
        start = marks.rfind(b" ", 0, pos) + 1
        end = marks.find(b" ", pos)
        end = len(marks) if end < 0 else end
        m = _SECRET_TOKEN.fullmatch(data, start, end)
        if m is None:  # a key glued to other token characters ("key=sk-...") is still found inside the run
            m = _SECRET_TOKEN.search(data, start, end)
        if m is not None:
            out.append(("secret", m.start(), m.end()))
        pos = marks.find(_TOKEN_RUN, end)


def _assigned_secrets(data: bytes, lower: bytes, out: list[Span]) -> None:
    tried: set[int] = set()
    for keyword in _ASSIGN_KEYWORDS:
        pos = lower.find(keyword)
        while pos >= 0:
            start = pos
            while start > 0 and lower[start - 1] in _IDENT:
                start -= 1
            if start not in tried:
                tried.add(start)
                m = _SECRET_ASSIGN.match(lower, start)
                if m is not None and _secret_value_ok(data[m.start(1) : m.end(1)]):
                    out.append(("secret", m.start(1), m.end(1)))
            pos = lower.find(keyword, pos + len(keyword))


def scan(data: bytes, lower: bytes | None = None) -> list[Span]:
    """All PII spans of UTF-8 ``data`` as ``(kind, start, end)`` byte offsets; ``lower`` is ``data.lower()`` when
    the caller already has it (it must have the same length as ``data``)."""
    out: list[Span] = []
    if b"@" in data:
        _emails(data, out)
    marks = data.translate(_NUM_MARK)
    if b"9" in marks:
        if marks.count(b"9") >= 8:
            _cards_and_phones(data, marks, out)
        if _IPV4_HINT.search(data):
            _ipv4(data, out)
        if b":" in data and _IPV6_HINT.search(data):
            _ipv6(data, out)
    marks = data.translate(_TOKEN_MARK)
    if _TOKEN_RUN in marks:
        _prefixed_secrets(data, marks, out)
    if b"PRIVATE KEY-----" in data:
        out.extend(("secret", m.start(), m.end()) for m in _PRIVATE_KEY.finditer(data))
    if b"=" in data or b":" in data:
        low = data.lower() if lower is None else lower
        if b"key" in low or b"secret" in low or b"token" in low or b"passw" in low or b"pwd" in low:
            _assigned_secrets(data, low, out)
    return out


def pii_kinds(text: str) -> set[str]:
    """The kinds of PII found in ``text`` (an empty set when none)."""
    return {kind for kind, _, _ in scan(text.encode())}


def find_pii(text: str) -> list[tuple[str, str]]:
    """``(kind, matched text)`` for every PII span of ``text``, in order."""
    data = text.encode()
    spans = sorted(scan(data), key=lambda s: (s[1], -s[2]))
    return [(kind, data[s:e].decode()) for kind, s, e in spans]


def redact(text: str) -> tuple[str, dict[str, int]]:
    """Replace every PII span with its label (``[EMAIL]``, ...); return the new text and the count per kind."""
    data = text.encode()
    spans = scan(data)
    if not spans:
        return text, {}
    spans.sort(key=lambda s: (s[1], -s[2]))
    out: list[bytes] = []
    counts: dict[str, int] = {}
    pos = 0
    for kind, start, end in spans:
        if start < pos:  # inside a span already replaced (an email inside a secret assignment, ...)
            continue
        out.append(data[pos:start])
        out.append(LABELS[kind].encode())
        counts[kind] = counts.get(kind, 0) + 1
        pos = end
    out.append(data[pos:])
    # Spans are ASCII and start and end on ASCII bytes, so the bytes around them stay valid UTF-8.
    return b"".join(out).decode(), counts

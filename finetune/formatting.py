"""Formatting shared by every app's messages."""

from __future__ import annotations


def human_bytes(n: int | float) -> str:
    """1536 -> '1.5 KiB' (binary units, as the web app shows them)."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"

"""Benchmark: ``validate_files`` on a 100,000-row Alpaca JSON Lines file, token counting included, against a naive
baseline (pandas load + one tokenizer call per row + per-row Python checks) in the same run.

The file is made in a temp dir by repeating $FINETUNE_DATASETS_DIR/alpaca_en_demo.json with varied text (words rotated
and swapped, numbers added; a few emails, phones and keys sprinkled in so the PII paths run). Each side runs in its own
subprocess so its peak RSS is its own. Targets: ours <= 10 s and <= 1 GB peak RSS, >= 5x faster than the baseline.

Run: ``.venv/bin/python bench/validate_throughput.py [--rows 100000] [--skip-baseline]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(os.environ.get("FINETUNE_DATASETS_DIR", ROOT.parent / "shared" / "datasets")) / "alpaca_en_demo.json"
SPRINKLE = [
    "Contact me at jane.doe{k}@example.com for details.",
    "Call (555) 123-{k:04d} after 5pm.",
    "The staging key is sk-{k:06d}abcdefghijklmnopqrstuv.",
    "Server at 10.0.{a}.{b} is down.",
]


def _vary(text: str, rng: random.Random, k: int) -> str:
    """A different but realistic text: rotate the words, swap a few, add a marker number."""
    words = text.split(" ")
    if len(words) > 3:
        cut = rng.randrange(len(words))
        words = words[cut:] + words[:cut]
        for _ in range(max(1, len(words) // 20)):
            i, j = rng.randrange(len(words)), rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
    return " ".join(words) + (f" ({k}-{rng.randrange(10_000)})" if k else "")


def build(path: Path, rows: int) -> None:
    """Write ``rows`` Alpaca rows as JSON Lines (about 1 in 500 rows carries some PII)."""
    base = json.loads(SOURCE.read_text())
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as fh:
        for n in range(rows):
            k, index = divmod(n, len(base))
            src = base[index]
            output = _vary(src["output"], rng, k)
            if n % 500 == 7:
                output += " " + rng.choice(SPRINKLE).format(k=n % 10_000, a=n % 250, b=(n // 250) % 250)
            row = {
                "instruction": _vary(src["instruction"], rng, k),
                "input": _vary(src["input"], rng, k) if src["input"] else "",
                "output": output,
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(path: str, parallel: bool | None) -> dict:
    """Child process: the library's validate_files (tokenizer load included in the timed call)."""
    sys.path.insert(0, str(ROOT))
    t0 = time.perf_counter()
    from datasets_app.validation import validate_files

    t1 = time.perf_counter()
    c1 = time.process_time()
    report = validate_files([path], max_length=512, parallel=parallel)
    t2 = time.perf_counter()
    helper = resource.getrusage(resource.RUSAGE_CHILDREN)  # the forked token-counting helper, if one ran
    cpu = time.process_time() - c1 + helper.ru_utime + helper.ru_stime
    # A second call in the same process: what a running worker sees (tokenizer and imports already loaded).
    t3 = time.perf_counter()
    validate_files([path], max_length=512, parallel=parallel)
    warm = time.perf_counter() - t3
    return {
        "import_s": round(t1 - t0, 2),
        "validate_s": round(t2 - t1, 2),
        "warm_s": round(warm, 2),
        "cpu_s": round(cpu, 2),
        "helper_peak_rss_mb": round(helper.ru_maxrss / 1024),
        "rows": report["rows"],
        "rows_valid": report["rows_valid"],
        "tokens_total": report["tokens"]["total"],
        "over_max_length": report["tokens"]["over_max_length"],
        "duplicates": [report["duplicates"]["exact"], report["duplicates"]["normalized"]],
        "pii": {k: v["count"] for k, v in report["pii"].items()},
        "verdict": report["verdict"],
        "peak_rss_mb": round(_peak_rss_mb()),
    }


def run_baseline(path: str) -> dict:
    """Child process: the naive way: pandas, one apply_chat_template call per row, per-row regex checks."""
    import hashlib
    import re

    t0 = time.perf_counter()
    import pandas as pd
    from transformers import AutoTokenizer

    sys.path.insert(0, str(ROOT))
    from training.engine.embedded import embedded_model_path

    t1 = time.perf_counter()
    c1 = time.process_time()
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path())
    df = pd.read_json(path, lines=True, dtype=False)
    patterns = {
        "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
        "phone": re.compile(r"(?:\+\d{1,3}[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}"),
        "credit_card": re.compile(r"\b(?:\d[ -]?){12,18}\d\b"),
        "ip_address": re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"),
        "secret": re.compile(
            r"(?:sk-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{30,}|AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{36})"
            r"|(?i:api[_-]?key|secret|token|password)\s*[:=]\s*\S{8,}"
        ),
    }
    control = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
    mojibake = re.compile(r"Ã.|â€")
    missing = {c: 0 for c in df.columns}
    empty = {c: 0 for c in df.columns}
    seen: set[str] = set()
    seen_norm: set[str] = set()
    pii = {k: 0 for k in patterns}
    exact = normalized = short = ctrl = broken = over = total = 0
    lengths = []
    for row in df.to_dict("records"):
        for c in df.columns:
            v = row.get(c)
            if v is None or (isinstance(v, float) and v != v):
                missing[c] += 1
            elif isinstance(v, str) and not v.strip():
                empty[c] += 1
        digest = hashlib.sha256(json.dumps(row, sort_keys=True).encode()).hexdigest()
        if digest in seen:
            exact += 1
        seen.add(digest)
        user = row["instruction"] + ("\n\n" + row["input"] if row["input"] else "")
        text = user + "\n" + row["output"]
        norm = " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())
        if norm in seen_norm:
            normalized += 1
        seen_norm.add(norm)
        for kind, pattern in patterns.items():
            if pattern.search(text):
                pii[kind] += 1
        short += len(row["output"].strip()) < 5
        ctrl += bool(control.search(text))
        broken += bool(mojibake.search(text))
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
        ids = tokenizer.apply_chat_template(messages, tokenize=True)
        n = len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
        lengths.append(n)
        total += n
        over += n > 512
    t2 = time.perf_counter()
    lengths.sort()
    return {
        "import_s": round(t1 - t0, 2),
        "validate_s": round(t2 - t1, 2),
        "cpu_s": round(time.process_time() - c1, 2),
        "rows": len(df),
        "tokens_total": total,
        "over_max_length": over,
        "duplicates": [exact, normalized - exact],
        "pii": pii,
        "peak_rss_mb": round(_peak_rss_mb()),
    }


def _child(mode: str, path: str, parallel: str = "auto") -> dict:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--file", path, "--parallel", parallel],
        capture_output=True,
        text=True,
        check=False,
        cwd=str(ROOT),
    )
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = round(time.perf_counter() - started, 2)
    return result


def main() -> None:
    """Build the file, run both sides in their own processes, print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--child", choices=["ours", "baseline"])
    parser.add_argument("--file")
    parser.add_argument(
        "--parallel", choices=["auto", "on", "off"], default="auto", help="token counting on a second core (ours)"
    )
    args = parser.parse_args()
    if args.child:
        parallel = {"auto": None, "on": True, "off": False}[args.parallel]
        result = run_ours(args.file, parallel) if args.child == "ours" else run_baseline(args.file)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alpaca_100k.jsonl"
        t0 = time.perf_counter()
        build(path, args.rows)
        print(
            f"built {args.rows:,} rows ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s; "
            f"cpus={os.cpu_count()}, load avg {os.getloadavg()[0]:.1f}"
        )
        ours = _child("ours", str(path), args.parallel)
        print(
            f"ours ({args.parallel}): validate_files {ours['validate_s']:6.2f} s cold, {ours['warm_s']:.2f} s warm "
            f"(cold: tokenizer load included; imports "
            f"{ours['import_s']:.2f} s; whole process {ours['process_s']:.2f} s), CPU {ours['cpu_s']:.2f} s, "
            f"peak RSS {ours['peak_rss_mb']} MB + token helper {ours['helper_peak_rss_mb']} MB"
        )
        print(
            f"          {json.dumps({k: ours[k] for k in ('rows', 'rows_valid', 'tokens_total', 'over_max_length', 'duplicates', 'pii', 'verdict')})}"
        )
        if args.skip_baseline:
            return
        base = _child("baseline", str(path))
        print(
            f"baseline: load + checks    {base['validate_s']:6.2f} s (tokenizer load included; imports "
            f"{base['import_s']:.2f} s; whole process {base['process_s']:.2f} s), CPU {base['cpu_s']:.2f} s, "
            f"peak RSS {base['peak_rss_mb']} MB"
        )
        print(
            f"          {json.dumps({k: base[k] for k in ('rows', 'tokens_total', 'over_max_length', 'duplicates', 'pii')})}"
        )
        print(
            f"speed-up: {base['validate_s'] / ours['validate_s']:.1f}x (validate), "
            f"{base['process_s'] / ours['process_s']:.1f}x (whole process), {base['cpu_s'] / ours['cpu_s']:.1f}x (CPU)"
        )
        rss = ours["peak_rss_mb"] + ours["helper_peak_rss_mb"]  # counts the pages they share twice: an upper bound
        ok = ours["validate_s"] <= 10 and rss <= 1024 and base["validate_s"] >= 5 * ours["validate_s"]
        print("targets (<= 10 s, <= 1 GB, >= 5x):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()

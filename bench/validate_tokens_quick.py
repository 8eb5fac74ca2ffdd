"""Benchmark: validate 100,000 Alpaca rows incl. token counts (read JSONL + convert + count tokens).

Builds a 100k-row Alpaca JSONL in a temp dir from /work/shared/datasets/alpaca_en_demo.json (every repetition varies
the text), then times ``iter_records`` + ``to_canonical`` + ``token_lengths`` with the embedded SmolLM2 tokenizer,
printing rows/s, wall and CPU time and peak RSS.
Run: ``.venv/bin/python bench/validate_tokens_quick.py [--rows N] [--exact]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.engine.data import DatasetFormat, detect_format, iter_records, to_canonical, token_lengths  # noqa: E402
from training.engine.data import tokenize as tokenize_module  # noqa: E402

# Public datasets: FINETUNE_DATASETS_DIR, as the tests take them.
SOURCE = (
    Path(os.environ.get("FINETUNE_DATASETS_DIR", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    / "alpaca_en_demo.json"
)


def _vary(text: str, rng: random.Random, k: int) -> str:
    """A different but realistic text: rotate the words and sprinkle a few numbers and swapped words."""
    words = text.split(" ")
    if len(words) > 3:
        cut = rng.randrange(len(words))
        words = words[cut:] + words[:cut]
        for _ in range(max(1, len(words) // 20)):
            i, j = rng.randrange(len(words)), rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
    return " ".join(words) + (f" ({k}-{rng.randrange(10_000)})" if k else "")


def build(path: Path, rows: int) -> None:
    """Write ``rows`` Alpaca rows as JSON Lines."""
    base = json.loads(SOURCE.read_text())
    rng = random.Random(0)
    with path.open("w") as fh:
        for n in range(rows):
            k, row = divmod(n, len(base))
            src = base[row]
            fh.write(
                json.dumps(
                    {
                        "instruction": _vary(src["instruction"], rng, k),
                        "input": _vary(src["input"], rng, k) if src["input"] else "",
                        "output": _vary(src["output"], rng, k),
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )


def main() -> None:
    """Build the file, time the stages, print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--exact", action="store_true", help="count by full batch encoding (no fast counter)")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from training.engine.embedded import embedded_model_path

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path())
    if args.exact:
        tokenize_module.FastTokenCounter.for_tokenizer = classmethod(lambda cls, tok: None)  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alpaca_100k.jsonl"
        t0 = time.perf_counter()
        build(path, args.rows)
        size = path.stat().st_size
        print(f"built {args.rows} rows, {size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s")

        c0, t0 = time.process_time(), time.perf_counter()
        rows = [row for _, row in iter_records(path)]
        c1, t1 = time.process_time(), time.perf_counter()
        fmt = detect_format(rows[:100])
        assert fmt == DatasetFormat.ALPACA, fmt
        examples = [to_canonical(row, fmt) for row in rows]
        c2, t2 = time.process_time(), time.perf_counter()
        lengths = token_lengths(tokenizer, examples)
        c3, t3 = time.process_time(), time.perf_counter()
    total = t3 - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()[0]
    print(
        f"counter={'exact' if args.exact else 'fast'}; load average {load:.1f} on {os.cpu_count()} cpus (wall times suffer when > 2)"
    )
    print(f"iter_records   {t1 - t0:6.2f} s wall {c1 - c0:6.2f} s cpu  ({args.rows / (t1 - t0):,.0f} rows/s)")
    print(f"to_canonical   {t2 - t1:6.2f} s wall {c2 - c1:6.2f} s cpu  ({args.rows / (t2 - t1):,.0f} rows/s)")
    print(
        f"token_lengths  {t3 - t2:6.2f} s wall {c3 - c2:6.2f} s cpu  ({args.rows / (t3 - t2):,.0f} rows/s, "
        f"{sum(lengths) / 1e6:.1f} M tokens)"
    )
    print(
        f"total          {total:6.2f} s wall {c3 - c0:6.2f} s cpu  ({args.rows / total:,.0f} rows/s); peak RSS {peak:.0f} MiB"
    )


if __name__ == "__main__":
    main()

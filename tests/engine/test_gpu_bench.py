"""``bench/gpu_throughput.py`` keeps working without a GPU: ``--tiny`` (forced on CPU) runs ours and TRL-best for LoRA
and the 2-process (gloo) scaling run, and writes figures that make sense. The speed figures themselves are only
meaningful on a GPU machine; here the test proves every path runs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300


def test_gpu_bench_runs_tiny_on_cpu(tmp_path: Path, alpaca_file: Path) -> None:
    out = tmp_path / "gpu.json"
    env = {**os.environ, "FINETUNE_DATASETS_DIR": str(alpaca_file.parent)}
    proc = subprocess.run(
        [sys.executable, "bench/gpu_throughput.py", "--tiny", "--steps", "3", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["tiny"] is True

    lora = report["cases"]["lora"]
    for side in ("ours", "trl-best"):
        figures = lora[side]
        assert figures["tokens_per_s"] > 0 and figures["tokens"] > 0, (side, figures)
        assert figures["peak_mb"] > 0, (side, figures)
        assert len(figures["losses"]) == 3, (side, figures)
        assert all(x is not None and math.isfinite(x) for x in figures["losses"]), (side, figures)
    assert lora["speedup"] > 0
    assert lora["trl-best"]["setup"]["padding_free"] is True
    assert lora["trl-best"]["setup"]["gradient_checkpointing"] is False

    import torch

    if not torch.cuda.is_available():
        assert report["cases"]["qlora"] == {"skipped": "needs CUDA"}
        assert "qlora: skipped (needs CUDA)" in proc.stdout
    if torch.cuda.is_available() and torch.cuda.device_count() < 2:
        assert "scaling" not in report  # one GPU: nothing to scale over
        return
    scaling = report["scaling"]
    assert scaling["nproc"] == 2
    assert scaling["tokens_per_s"] > 0 and scaling["tokens_per_s_1"] > 0 and scaling["efficiency"] > 0
    assert all(x is not None and math.isfinite(x) for x in scaling["losses"])
    assert "lora  ours " in proc.stdout and " tok/s  trl-best " in proc.stdout

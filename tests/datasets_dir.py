"""Where tests find the public datasets (Alpaca, ShareGPT, preference pairs): $FINETUNE_DATASETS_DIR, else the
`shared/datasets` folder beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

DATASETS = Path(os.environ.get("FINETUNE_DATASETS_DIR", Path(__file__).resolve().parents[2] / "shared" / "datasets"))

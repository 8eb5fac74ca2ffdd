"""What the platform benchmarks share: the development database (created when missing) and a ready dataset stored
like an upload's, made from rows in memory."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any


def ensure_database() -> None:
    """Create the development database of the settings when it does not exist yet."""
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    try:
        psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]).close()
    except psycopg.OperationalError:
        with psycopg.connect(
            host=db["HOST"], port=db["PORT"], user=db["USER"], dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


def stored_dataset(user: Any, rows: list[dict[str, Any]], *, fmt: str, name: str) -> Any:
    """A ready dataset of ``user`` whose one source file (JSON lines of ``rows``) is in the storage like an upload."""
    from django.core.files import File

    from datasets_app.models import Dataset, DatasetFile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{fmt}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        ds = Dataset.objects.create(
            owner=user,
            name=name,
            status=Dataset.Status.READY,
            format=fmt,
            row_count=len(rows),
            verdict="ok",
            report={"rows": len(rows)},
        )
        df = DatasetFile(
            dataset=ds,
            role="source",
            kind="jsonl",
            original_filename=path.name,
            size_bytes=path.stat().st_size,
            sha256="0" * 64,
        )
        with open(path, "rb") as fh:
            df.file.save("upload", File(fh), save=False)
        df.save()
    return ds

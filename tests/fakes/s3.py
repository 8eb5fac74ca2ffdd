"""A real S3 HTTP server for tests: moto's standalone server (`python -m moto.server`) on loopback. boto3 and
django-storages talk to it exactly as to S3 or MinIO (signed requests, multipart uploads, presigned URLs)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.processes import free_port, stop, wait_for_port


@dataclass
class FakeS3:
    url: str
    bucket: str
    proc: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        """Settings (as environment) of a process whose default storage is this bucket."""
        return {
            "STORAGE_BACKEND": "s3",
            "AWS_STORAGE_BUCKET_NAME": self.bucket,
            "AWS_S3_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_S3_REGION_NAME": "us-east-1",
        }

    def settings(self) -> dict[str, object]:
        """The same, as Django settings (for the test process itself)."""
        env = self.env()
        return {
            "STORAGE_BACKEND": "s3",
            "STORAGES": {
                "default": {"BACKEND": "storages.backends.s3.S3Storage"},
                "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
            },
            **{k: v for k, v in env.items() if k.startswith("AWS_")},
            "AWS_DEFAULT_ACL": None,
            "AWS_QUERYSTRING_AUTH": True,
            "AWS_QUERYSTRING_EXPIRE": 600,
        }

    def client(self):  # noqa: ANN201
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def keys(self, prefix: str = "") -> dict[str, int]:
        """Every object under `prefix`: key -> size."""
        out: dict[str, int] = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
        return out


def start_fake_s3(log: Path) -> FakeS3:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_port(port, proc, timeout=60)
    s3 = FakeS3(f"http://127.0.0.1:{port}", f"finetune-{uuid.uuid4().hex[:8]}", proc)
    s3.client().create_bucket(Bucket=s3.bucket)
    return s3


def stop_fake_s3(s3: FakeS3) -> None:
    stop(s3.proc)

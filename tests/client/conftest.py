"""The live platform the client tests talk to: daphne (session fixture) and one Celery worker for this folder that
serves both the `default` queue (validation, exports) and `training`, one task at a time, so a module trains on a
single process it started once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def platform_worker(test_db_name, daphne_url, fake_hub_server, tmp_path_factory):
    from tests.processes import server_env, start_celery_worker, stop

    # The fake Hub speaks LFS, not Xet (README, "Test fakes: Hugging Face Hub").
    env = server_env(test_db_name, SITE_URL=daphne_url, HF_ENDPOINT=fake_hub_server.url, HF_UPLOAD_PROTOCOL="lfs")
    proc, node = start_celery_worker(env, tmp_path_factory.mktemp("cw") / "worker.log", queues="default,training")
    yield node
    stop(proc)

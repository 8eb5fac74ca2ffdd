"""The live platform the client tests talk to: daphne (session fixture) and one Celery worker for this folder that
serves both the `default` queue (validation, exports) and `training`, one task at a time, so a module trains on a
single process it started once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def platform_worker(test_db_name, daphne_url, fake_hub_server, tmp_path_factory):
    from tests.processes import server_env, start_celery_worker, stop

    # The fake Hub speaks LFS, not Xet (README, "Test fakes: Hugging Face Hub"). JSON logs: the live test reads the
    # worker's log lines back (job_id and task_id on each line of a job's run).
    env = server_env(
        test_db_name, SITE_URL=daphne_url, HF_ENDPOINT=fake_hub_server.url, HF_UPLOAD_PROTOCOL="lfs", LOG_FORMAT="json"
    )
    log = tmp_path_factory.mktemp("cw") / "worker.log"
    proc, node = start_celery_worker(env, log, queues="default,training")
    yield {"node": node, "log": log}
    stop(proc)

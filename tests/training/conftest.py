from __future__ import annotations

import pytest

from models_app.models import BaseModel
from tests.factories import TINY_HYPER, make_ready_dataset  # noqa: F401  (kept for the fixtures below)


@pytest.fixture
def embedded_base(db):
    return BaseModel.objects.ensure_embedded()


@pytest.fixture
def ready_dataset(user, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    return make_ready_dataset(user)


@pytest.fixture(scope="module")
def training_worker(test_db_name, daphne_url, tmp_path_factory):
    """A `training` queue worker for this module; Modal runs go to the subprocess stand-in and call back to daphne."""
    from tests.processes import server_env, start_celery_worker, stop

    runs = tmp_path_factory.mktemp("modal-runs")
    env = server_env(
        test_db_name,
        MODAL_CLIENT="tests.fakes.modal.SubprocessModalClient",
        SITE_URL=daphne_url,
        MODAL_RUNS_DIR=str(runs),
    )
    proc, node = start_celery_worker(env, tmp_path_factory.mktemp("tw") / "worker.log", queues="training")
    yield node
    stop(proc)

"""Snapshot of Celery task names: renaming a task strands messages already queued, so it must be deliberate."""

from __future__ import annotations

from finetune.celery import app

EXPECTED = [
    "dashboard.tasks.clear_expired_sessions",
    "dashboard.tasks.send_test_notification",
    "datasets_app.tasks.process_dataset",
    "models_app.tasks.exports.reclaim_stale",
    "models_app.tasks.exports.run_export",
    "models_app.tasks.exports.run_ollama_import",
    "models_app.tasks.hub.download_base_model",
    "models_app.tasks.hub.push_to_hub",
    "models_app.tasks.playground.generate",
    "training.tasks.deliver_job_webhook",
    "training.tasks.recover_jobs",
    "training.tasks.run_training_job",
    "training.tasks.send_job_email",
    "training.tasks.sweep_checkpoints",
]


def test_task_names_are_stable():
    app.loader.import_default_modules()
    names = sorted(n for n in app.tasks if not n.startswith("celery."))
    assert names == EXPECTED


def test_queues_and_reliability_settings():
    conf = app.conf
    assert {q.name for q in conf.task_queues} == {"default", "training", "inference"}
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.broker_transport_options["visibility_timeout"] >= 24 * 3600
    assert conf.task_routes["training.tasks.run_*"] == {"queue": "training"}
    assert conf.task_routes["models_app.tasks.playground.*"] == {"queue": "inference"}
    assert "clear-expired-sessions" in conf.beat_schedule
    assert conf.beat_schedule["recover-training-jobs"]["task"] == "training.tasks.recover_jobs"
    assert conf.beat_schedule["reclaim-model-tasks"]["task"] == "models_app.tasks.exports.reclaim_stale"
    assert conf.beat_schedule["sweep-orphan-checkpoints"]["task"] == "training.tasks.sweep_checkpoints"

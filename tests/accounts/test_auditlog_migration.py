"""The audit log moved from `dashboard` to `accounts` (accounts 0003, dashboard 0002): the table is renamed with its
rows, and the content type moves with the operators' permissions on it; migrating back restores both."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE = [("accounts", "0002_notifications"), ("dashboard", "0001_initial")]
AFTER = [("accounts", "0003_auditlog"), ("dashboard", "0002_auditlog_moved_to_accounts")]


def test_audit_rows_and_permissions_follow_the_model():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        old = executor.loader.project_state(BEFORE).apps
        Entry = old.get_model("dashboard", "AuditLog")
        Entry.objects.create(
            actor_username="ops", action="job.cancel", target_type="training.trainingjob", target_id="7"
        )
        ContentType.objects.filter(app_label="accounts", model="auditlog").delete()  # as before the move
        ct, _ = ContentType.objects.get_or_create(app_label="dashboard", model="auditlog")
        perm, _ = Permission.objects.get_or_create(
            content_type=ct, codename="view_auditlog", defaults={"name": "Can view audit log"}
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())  # the later migrations too, for the tests that follow

    from accounts.models import AuditLog

    assert list(AuditLog.objects.values_list("actor_username", "action", "target_id")) == [("ops", "job.cancel", "7")]
    perm.refresh_from_db()
    assert perm.content_type.app_label == "accounts"  # an operator allowed to read the log still is
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('dashboard_auditlog'), to_regclass('auditlog_target_idx')")
        assert cursor.fetchone() == (None, "auditlog_target_idx")

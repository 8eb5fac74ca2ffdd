"""The audit log moves from `dashboard` to `accounts` (the bottom layer, so every app's admin can write to it).

The table and its rows stay: it is renamed, and the content type (with the operators' permissions on it) moves too."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def move_content_type(apps, schema_editor):  # type: ignore[no-untyped-def]
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="accounts", model="auditlog").exists():
        ContentType.objects.filter(app_label="dashboard", model="auditlog").update(app_label="accounts")


def move_content_type_back(apps, schema_editor):  # type: ignore[no-untyped-def]
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="dashboard", model="auditlog").exists():
        ContentType.objects.filter(app_label="accounts", model="auditlog").update(app_label="dashboard")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_notifications"),
        ("dashboard", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditLog",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                                   verbose_name="ID")),
                        ("actor_username", models.CharField(blank=True, default="", max_length=150)),
                        ("action", models.CharField(db_index=True, max_length=64)),
                        ("target_type", models.CharField(db_index=True, max_length=64)),
                        ("target_id", models.CharField(blank=True, default="", max_length=64)),
                        ("target_repr", models.CharField(blank=True, default="", max_length=200)),
                        ("details", models.JSONField(blank=True, default=dict)),
                        ("time", models.DateTimeField(auto_now_add=True, db_index=True)),
                        ("actor", models.ForeignKey(blank=True, null=True,
                                                    on_delete=django.db.models.deletion.SET_NULL,
                                                    related_name="audit_entries", to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        "ordering": ["-time", "-id"],
                        "indexes": [models.Index(fields=["target_type", "target_id"], name="auditlog_target_idx")],
                    },
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE dashboard_auditlog RENAME TO accounts_auditlog;"
                    "ALTER INDEX dashboard_a_target__8debb7_idx RENAME TO auditlog_target_idx;",
                    "ALTER INDEX auditlog_target_idx RENAME TO dashboard_a_target__8debb7_idx;"
                    "ALTER TABLE accounts_auditlog RENAME TO dashboard_auditlog;",
                ),
            ],
        ),
        migrations.RunPython(move_content_type, move_content_type_back),
    ]

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("datasets_app", "0001_initial"),
        ("training", "0006_sweeps"),
    ]

    operations = [
        migrations.AddField(
            model_name="trainingjob",
            name="compare_prompts",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="trainingjob",
            name="eval_dataset",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="eval_jobs",
                to="datasets_app.dataset",
            ),
        ),
    ]

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("models_app", "0008_ollama_quantization"),
    ]

    operations = [
        migrations.AddField(
            model_name="finetunedmodel",
            name="evaluation",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]

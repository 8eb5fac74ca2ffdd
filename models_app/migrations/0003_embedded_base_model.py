from __future__ import annotations

from django.db import migrations


def add_embedded(apps, schema_editor):  # type: ignore[no-untyped-def]
    BaseModel = apps.get_model("models_app", "BaseModel")
    BaseModel.objects.get_or_create(
        repo_id="embedded/SmolLM2-135M-Instruct",
        defaults={
            "name": "SmolLM2-135M-Instruct (embedded)",
            "source": "embedded",
            "architecture": "LlamaForCausalLM",
            "parameters": 134_515_008,
            "context_length": 8192,
            "license": "apache-2.0",
            "has_chat_template": True,
            "size_bytes": 538_090_408,
            "description": "Bundled with finetune: works offline, answers chat prompts, trains on a CPU.",
        },
    )


class Migration(migrations.Migration):
    dependencies = [("models_app", "0002_initial")]
    operations = [migrations.RunPython(add_embedded, migrations.RunPython.noop)]

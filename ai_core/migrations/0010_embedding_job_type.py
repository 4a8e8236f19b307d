from django.db import migrations

from ai_core.job_type_defaults import DEFAULT_JOB_TYPES


def load_embedding_type(apps, schema_editor):
    AIJobType = apps.get_model("ai_core", "AIJobType")
    spec = next(s for s in DEFAULT_JOB_TYPES if s["name"] == "embedding")
    AIJobType.objects.update_or_create(name=spec["name"], defaults={**spec, "default_model": "echo-embed-1"})


class Migration(migrations.Migration):
    dependencies = [("ai_core", "0009_api_keys")]
    operations = [migrations.RunPython(load_embedding_type, migrations.RunPython.noop)]

from django.db import migrations

from ai_core.job_type_defaults import DEFAULT_JOB_TYPES


def load_default_job_types(apps, schema_editor):
    AIJobType = apps.get_model("ai_core", "AIJobType")
    for spec in DEFAULT_JOB_TYPES:
        AIJobType.objects.update_or_create(name=spec["name"], defaults={**spec, "default_model": "echo-1"})


class Migration(migrations.Migration):
    dependencies = [("ai_core", "0002_initial")]
    operations = [migrations.RunPython(load_default_job_types, migrations.RunPython.noop)]

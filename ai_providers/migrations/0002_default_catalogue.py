from django.db import migrations


def load(apps, schema_editor):
    from ai_providers.catalogue_defaults import load_catalogue

    load_catalogue(apps.get_model("ai_providers", "Provider"), apps.get_model("ai_providers", "ProviderModel"),
                   apps.get_model("ai_providers", "ModelPrice"), token_rates=False)  # 0003 adds those


class Migration(migrations.Migration):
    dependencies = [("ai_providers", "0001_initial")]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]

from django.db import migrations


def load(apps, schema_editor):
    from ai_providers.catalogue_defaults import load_catalogue

    # Idempotent: adds the embedding models (and anything else missing), never overwrites an operator's edits.
    load_catalogue(
        apps.get_model("ai_providers", "Provider"),
        apps.get_model("ai_providers", "ProviderModel"),
        apps.get_model("ai_providers", "ModelPrice"),
    )


class Migration(migrations.Migration):
    dependencies = [("ai_providers", "0003_token_kind_rates")]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]

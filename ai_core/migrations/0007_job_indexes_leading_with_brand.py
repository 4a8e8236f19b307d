import django.db.models.deletion
from django.db import migrations, models

# The brand foreign key's own index, as Django named it: only the index goes; the constraint stays as it is
# (re-creating it would re-validate every job row).
BRAND_FK_INDEX = "ai_core_aijob_brand_id_02a1af6d"


class Migration(migrations.Migration):
    """Two job indexes that others make redundant: (brand) and (brand, status) are prefixes of the indexes that
    lead with the brand. Every job insert and status change maintained them."""

    dependencies = [
        ("ai_core", "0006_dashboard_totals_index"),
        ("business", "0001_initial"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="aijob", name="aijob_brand_status"),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="aijob",
                    name="brand",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="ai_jobs",
                        to="business.brand",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{BRAND_FK_INDEX}"',
                    reverse_sql=f'CREATE INDEX "{BRAND_FK_INDEX}" ON "ai_core_aijob" ("brand_id")',
                ),
            ],
        ),
    ]

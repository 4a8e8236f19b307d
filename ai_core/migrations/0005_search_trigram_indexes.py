"""Trigram indexes so `?search=` on a brand's jobs stays fast at a million rows (PostgreSQL only).

Django's `icontains` on PostgreSQL compiles to `UPPER(col::text) LIKE UPPER(%s)`, so the indexes are on that
exact expression; `brand_id` leads (btree_gin) so a search reads one brand's matches, not every brand's.
"""

from django.db import migrations

INDEXES = {
    "aijob_search_description_trgm": "(brand_id, UPPER(description::text) gin_trgm_ops)",
    "aijob_search_job_id_trgm": "(brand_id, UPPER(job_id::text) gin_trgm_ops)",
}


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    for name, columns in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON ai_core_aijob USING gin {columns}")


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("ai_core", "0004_engine_claim_index")]
    operations = [migrations.RunPython(create_indexes, drop_indexes)]

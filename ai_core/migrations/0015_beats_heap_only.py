"""Heartbeats and progress as heap-only (HOT) updates on PostgreSQL.

A beat (ai_core.statements.BEAT_FIELDS) writes heartbeat_at, progress_percentage and updated_at. PostgreSQL
updates a row without touching any index (HOT) only when no index holds a column the update changed and the
new row version fits on the row's own page. So:

1. The reaper's index of running jobs is on (job_type, started_at), columns set at claim, instead of
   heartbeat_at, which every beat changed: each beat rewrote the row's entry in all 16 indexes, two GIN.
2. The jobs table keeps room on its pages for those versions (PostgreSQL only): FILLFACTOR below.
"""

from django.conf import settings
from django.db import migrations, models

# A new row is put on a page only while the page is less than 80 % full, so each page keeps ~1.6 kB for the
# new versions its rows' beats and transitions write (a running echo job's row is ~0.4–0.6 kB: two or three
# versions per page between prunes, which a page's next read does once the versions are dead; a beat touches
# the jobs of one claimed batch, a few rows a page). The cost: a table 25 % larger when full of final rows.
FILLFACTOR = 80


def set_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE ai_core_aijob SET (fillfactor = {FILLFACTOR})")


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE ai_core_aijob RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [
        ("ai_core", "0014_capacity"),
        ("business", "0004_max_running_jobs"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name="aijob",
            index=models.Index(
                condition=models.Q(("status", "running")),
                fields=["job_type", "started_at"],
                name="aijob_running_started",
            ),
        ),
        migrations.RemoveIndex(model_name="aijob", name="aijob_running_heartbeat"),
        migrations.RunPython(set_fillfactor, reset_fillfactor),
    ]

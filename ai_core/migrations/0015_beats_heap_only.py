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

# New rows fill a page to half, so that each page has room for a second version of every row on it. A beat
# rewrites the running jobs of a claimed batch in one statement (statements.BEATS_PG, up to watch.CHUNK of
# them, in id order), and rows of consecutive ids share pages: a page whose rows all run needs room for a new
# version of each of them at once, since a statement cannot prune the versions it wrote itself; the versions
# of the round before are dead by then, and the page's next read prunes them (in place, no VACUUM). Measured
# with `BENCH_ENGINE_PARTS=io_aio` (echo, 4 progress reports a job), the share of beats that were HOT: at
# fillfactor 80 22 % (three runs) and 81 % (two), at 65 88 % (one), at 50 62-99 % (six); the spread is
# whether PostgreSQL could prune (an old snapshot of another session on the server holds that back). The cost:
# pages of final rows less full. After a run of 2 000 jobs the heap was 1.3-4.5 MB at 50 and 1.9-3.7 MB on main
# (every row is updated at its claim and its end, and without HOT each beat also left a version elsewhere),
# the indexes 5.0-6.1 MB and 6.7-6.9 MB (without HOT each beat left an entry in every index).
FILLFACTOR = 50


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

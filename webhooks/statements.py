"""webhooks's hand-written statements, in one place: built from the models' _meta (business.sql is the
toolkit), so a field added with a default needs no change here (ai_core/tests/test_statement_columns.py).
"""

from ai_core.models import AIJob
from business.sql import prepared_cursor
from webhooks.models import WebhookEndpoint

# The active endpoints of a job's brand, with their subscribed events (placeholder: the job's pk). It runs
# after every final transition, and most brands have no endpoint: one plain statement, no ORM.
ENDPOINTS_OF_JOB_BRAND = (
    f"SELECT e.id, e.events FROM {WebhookEndpoint._meta.db_table} e JOIN {AIJob._meta.db_table} j "
    f"ON j.brand_id = e.brand_id WHERE j.id = %s AND e.is_active"
)


def endpoints_of_job_brand(job_pk: int) -> list[tuple]:
    """(endpoint id, events as stored) of the job's brand's active endpoints."""
    with prepared_cursor() as cursor:
        cursor.execute(ENDPOINTS_OF_JOB_BRAND, [job_pk])
        return cursor.fetchall()

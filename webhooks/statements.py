"""webhooks's hand-written statements, in one place: built from the models' _meta (business.sql is the
toolkit), so a field added with a default needs no change here (ai_core/tests/test_statement_columns.py).
"""

from business.sql import prepared_cursor
from webhooks.models import WebhookEndpoint

# The active endpoints of a brand, with their subscribed events (placeholder: the brand's pk). Read at a job's
# end when the brand is not in services.endpoints_memo; most brands have no endpoint: one plain statement.
ENDPOINTS_OF_BRAND = f"SELECT id, events FROM {WebhookEndpoint._meta.db_table} WHERE brand_id = %s AND is_active"


def endpoints_of_brand(brand_pk: int) -> list[tuple]:
    """(endpoint id, events as stored) of the brand's active endpoints."""
    with prepared_cursor() as cursor:
        cursor.execute(ENDPOINTS_OF_BRAND, [brand_pk])
        return cursor.fetchall()

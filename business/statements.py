"""business's hand-written statements, in one place: each built from its models' fields (business.sql), so a
field added with a default needs no change here (ai_core/tests/test_statement_columns.py). The toolkit they
are built with is business.sql.
"""

from dataclasses import dataclass
from functools import cache

from business.models import Brand, Company, Membership, User
from business.sql import Columns


@dataclass(frozen=True)
class UserWithBrandRead:
    """The request's user and, when they may act on it, its brand and company: one statement (placeholders: the
    brand id, the user id). The brand and its company carry their ids and names."""

    user: Columns
    brand: Columns
    company: Columns
    sql: str


@cache
def user_with_brand_read() -> UserWithBrandRead:
    """business.access.user_with_brand's statement. The access rule is brands_for_user's: a brand of the user's
    own company, and a membership of it unless company admin."""
    user, brand = Columns(User, "u"), Columns(Brand, "b", ["id", "company_id", "name"])
    company = Columns(Company, "c", ["id", "name"])
    sql = (
        f"SELECT {user.sql}, {brand.sql}, {company.sql} FROM {User._meta.db_table} u "
        f"LEFT JOIN {Brand._meta.db_table} b ON b.id = %s AND b.company_id = u.company_id AND (u.is_company_admin "
        f"OR EXISTS (SELECT 1 FROM {Membership._meta.db_table} m WHERE m.user_id = u.id AND m.brand_id = b.id)) "
        f"LEFT JOIN {Company._meta.db_table} c ON c.id = b.company_id WHERE u.id = %s"
    )
    return UserWithBrandRead(user=user, brand=brand, company=company, sql=sql)


# PostgreSQL: a transaction-scoped advisory lock on a text key (login throttling's turn per username and IP).
ADVISORY_XACT_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"

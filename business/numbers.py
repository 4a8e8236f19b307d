"""Reading a number out of text (URL paths, query strings, headers) without a 500 for any text."""

from django.db.models import BigIntegerField

BIGINT_MAX = BigIntegerField.MAX_BIGINT


def parse_natural(text) -> int | None:
    """The non-negative integer `text` writes in ASCII digits, if a bigint column can hold it; else None.

    str.isdigit() alone is not enough: it accepts "³" and "١", which int() refuses or reads, and a number past
    the bigint range reaches the database and fails there.
    """
    text = str(text)
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(BIGINT_MAX))):
        return None
    value = int(text)
    return value if value <= BIGINT_MAX else None

"""Job and batch ids: 12 characters of [a-z0-9], each uniform and independent (one random draw per id)."""

import re

from ai_core.models import JOB_ID_ALPHABET, new_job_id, random_id
from batches.models import new_batch_id


def test_job_and_batch_ids_have_their_prefix_and_twelve_characters_of_the_alphabet():
    assert re.fullmatch(r"ai_job_[a-z0-9]{12}", new_job_id())
    assert re.fullmatch(r"batch_[a-z0-9]{12}", new_batch_id())


def test_every_character_is_drawn_at_every_position_and_ids_do_not_repeat():
    ids = [random_id() for _ in range(3000)]

    assert len(set(ids)) == len(ids)
    for position in range(12):
        # Missing a character anywhere over 3 000 uniform draws has a probability of about 1e-36.
        assert {i[position] for i in ids} == set(JOB_ID_ALPHABET), position

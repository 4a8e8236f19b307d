"""The compiled fast path of input validation (fastjsonschema) never accepts what jsonschema refuses: for every
default job type's schema, on arbitrary JSON shaped like its inputs, both give the same verdict."""

import json

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai_core.job_type_defaults import DEFAULT_JOB_TYPES
from ai_core.services import _input_validator_for

SCHEMAS = {t["name"]: t["input_schema"] for t in DEFAULT_JOB_TYPES}
KEYS = sorted(
    {"messages", "role", "content", "name", "model", "max_tokens", "temperature", "echo", "prompt", "input"}
    | {"delay_ms", "chunks", "fail", "fail_times", "dimensions", "analysis_type", "instructions", "other"}
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-3, max_value=300_000)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-3, max_value=5)
    | st.sampled_from(["", "user", "system", "tool", "transient", "gpt-4o", "x" * 65, "1"])
    | st.text(max_size=5)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=12,
)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.dictionaries(st.sampled_from(KEYS), JSON, max_size=5))
def test_the_compiled_validator_agrees_with_jsonschema(name, value):
    schema = SCHEMAS[name]
    validator = _input_validator_for(json.dumps(schema, sort_keys=True))

    assert validator.compiled is not None  # the default schemas all take the fast path
    assert bool(validator.errors(value)) == (not jsonschema.Draft202012Validator(schema).is_valid(value))


def test_a_schema_with_a_keyword_of_another_meaning_is_left_to_jsonschema():
    for schema, refused in (
        ({"type": "object", "properties": {"a": {"prefixItems": [{"type": "string"}]}}}, {"a": [1]}),
        ({"type": "object", "properties": {"a": {"enum": [1, 2]}}}, {"a": True}),  # 1 == True in Python
        ({"type": "object", "properties": {"a": {"uniqueItems": True}}}, {"a": [1, 1]}),
    ):
        validator = _input_validator_for(json.dumps(schema, sort_keys=True))
        assert validator.compiled is None
        assert validator.errors(refused)

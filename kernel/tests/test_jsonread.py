"""kernel.jsonread: the one reading of JSON input, and what it refuses (with the error_code answered)."""

import pytest

from kernel.jsonread import JSONRefused, json_depth_exceeds, json_parse, json_strings


def test_plain_json_reads_as_json():
    assert json_parse('{"a": [1, "x", {"b": null}]}', max_depth=3) == {"a": [1, "x", {"b": None}]}


@pytest.mark.parametrize(
    ("text", "error_code"),
    [
        ("{", "MALFORMED_JSON"),
        ('{"a": NaN}', "MALFORMED_JSON"),
        ('{"a": Infinity}', "MALFORMED_JSON"),
        ("[[[[1]]]]", "MALFORMED_JSON"),  # deeper than 3
        ('{"a": "\\ud800"}', "INVALID_UNICODE"),
        ('{"\\udfff": 1}', "INVALID_UNICODE"),
    ],
)
def test_refused_json_says_why(text, error_code):
    with pytest.raises(JSONRefused) as refused:
        json_parse(text, max_depth=3)
    assert refused.value.error_code == error_code


def test_a_surrogate_pair_is_text_not_a_lone_surrogate():
    assert json_parse('{"a": "\\ud83d\\ude00"}', max_depth=2) == {"a": "\U0001f600"}


def test_depth_and_strings_are_read_without_recursion():
    deep = current = []
    for _ in range(10_000):  # far deeper than Python's recursion limit
        current.append([])
        current = current[0]
    assert json_depth_exceeds(deep, 100)
    assert not json_depth_exceeds({"a": [1, 2]}, 2)
    assert sorted(json_strings({"k": ["v", {"k2": "v2"}], "n": 1})) == ["k", "k2", "n", "v", "v2"]

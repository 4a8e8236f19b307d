"""Hostile and broken input: always a clear 4xx with an error_code, never a 500, and nothing stored."""

import json

import pytest

from ai_core.models import AIJob, AIJobEvent
from ai_core.tests.factories import AIJobFactory, input_for

CHAT = {"job_type": "chat_completion", "input_data": input_for("chat_completion")}


@pytest.fixture
def alice(personas, client_for):
    return client_for(personas.alice, personas.brand_a)


def post_raw(client, body: bytes | str, content_type="application/json", **extra):
    return client.generic("POST", "/ai/jobs/", body, content_type=content_type, **extra)


def assert_refused(response, status, error_code=None):
    assert response.status_code == status, response.content[:300]
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["error_code"], str) and body["error_code"]
    if error_code:
        assert body["error_code"] == error_code
    assert AIJob.objects.count() == 0
    assert AIJobEvent.objects.count() == 0


@pytest.mark.parametrize(
    "body", ['{"job_type": ', "not json", "{'single': 'quotes'}", "\xff\xfe", "[1,]", '{"a": NaN}']
)
def test_malformed_json_is_a_400(alice, body):
    assert_refused(post_raw(alice, body.encode("latin-1") if "\xff" in body else body), 400, "MALFORMED_JSON")


def test_json_nested_ten_thousand_deep_is_a_400(alice):
    deep = '{"job_type": "chat_completion", "input_data": ' + '{"a": ' * 10_000 + "1" + "}" * 10_000 + "}"

    assert_refused(post_raw(alice, deep), 400, "MALFORMED_JSON")


def test_input_data_nested_past_the_limit_is_a_400(alice):
    nested: dict = {"content": "x"}
    for _ in range(40):
        nested = {"n": nested}

    response = alice.post(
        "/ai/jobs/",
        {"job_type": "content_analysis", "input_data": {"content": "x", "extra": nested}},
        format="json",
    )

    assert_refused(response, 400)


def test_a_twenty_megabyte_body_is_a_413(alice):
    body = json.dumps({**CHAT, "description": "x" * (20 * 1024 * 1024)})

    assert_refused(post_raw(alice, body), 413, "PAYLOAD_TOO_LARGE")


def test_a_one_megabyte_prompt_is_refused(alice):
    response = alice.post(
        "/ai/jobs/", {"job_type": "text_generation", "input_data": {"prompt": "x" * 1_000_000}}, format="json"
    )

    assert_refused(response, response.status_code)
    assert response.status_code in {400, 413}


@pytest.mark.parametrize(
    "body",
    [
        [],
        "a string",
        42,
        None,
        {"job_type": 123, "input_data": {}},
        {"job_type": ["chat_completion"], "input_data": input_for("chat_completion")},
        {"job_type": {"name": "chat_completion"}, "input_data": input_for("chat_completion")},
        {"job_type": "chat_completion", "input_data": "messages"},
        {"job_type": "chat_completion", "input_data": None},
        {"job_type": "chat_completion", "input_data": [1, 2]},
        {"job_type": "chat_completion"},
        {**CHAT, "priority": "asap"},
        {**CHAT, "priority": ["high"]},
        {**CHAT, "priority": None},
        {**CHAT, "description": {"a": 1}},
        {**CHAT, "description": "x" * 2001},
        {"job_type": "chat_completion", "input_data": {"messages": "hello"}},
        {"job_type": "chat_completion", "input_data": {"messages": [{"role": "robot", "content": "x"}]}},
        {
            "job_type": "chat_completion",
            "input_data": {"messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
        },
    ],
)
def test_wrong_types_are_a_400(alice, body):
    response = alice.post("/ai/jobs/", body, format="json")

    assert_refused(response, 400)
    assert response.json()["error_code"] in {"VALIDATION_ERROR", "JOB_TYPE_NOT_FOUND"}


@pytest.mark.parametrize("name", ["no_such_type", "", "CHAT_COMPLETION", "chat_completion\x00", "x" * 101])
def test_an_unknown_job_type_is_a_400_job_type_not_found(alice, name):
    response = alice.post("/ai/jobs/", {"job_type": name, "input_data": {}}, format="json")

    assert_refused(response, 400)
    assert response.json()["error_code"] in {"JOB_TYPE_NOT_FOUND", "VALIDATION_ERROR"}
    if name == "no_such_type":
        assert response.json()["error_code"] == "JOB_TYPE_NOT_FOUND"


@pytest.mark.parametrize(
    "input_data",
    [
        {"messages": [{"role": "user", "content": "a\x00b"}]},
        {"messages": [{"role": "user", "content": "hi"}], "x\x00": 1},
    ],
)
def test_a_nul_character_in_input_data_is_a_400(alice, input_data):
    # PostgreSQL's jsonb cannot store one (found by the fuzzer as a 500 on /ai/openai/chat/)
    response = alice.post("/ai/jobs/", {"job_type": "chat_completion", "input_data": input_data}, format="json")

    assert_refused(response, 400, "VALIDATION_ERROR")


def test_a_nul_escape_written_as_text_is_accepted(alice):
    text = "a backslash then u0000: \\u0000"
    response = alice.post(
        "/ai/jobs/",
        {"job_type": "chat_completion", "input_data": {"messages": [{"role": "user", "content": text}]}},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["input_data"]["messages"][0]["content"] == text


def test_an_inactive_job_type_is_not_found(alice):
    from ai_core.models import AIJobType

    AIJobType.objects.filter(name="chat_completion").update(is_active=False)

    assert_refused(alice.post("/ai/jobs/", CHAT, format="json"), 400, "JOB_TYPE_NOT_FOUND")


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data; boundary=x"])
def test_a_body_that_is_not_json_is_a_415(alice, content_type):
    assert_refused(
        post_raw(alice, "job_type=chat_completion", content_type=content_type), 415, "UNSUPPORTED_MEDIA_TYPE"
    )


# --- query parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params,error_code",
    [
        ({"page_size": "1000000"}, "INVALID_PAGE_SIZE"),
        ({"page_size": "0"}, "INVALID_PAGE_SIZE"),
        ({"page_size": "-5"}, "INVALID_PAGE_SIZE"),
        ({"page_size": "ten"}, "INVALID_PAGE_SIZE"),
        ({"status": "done"}, "INVALID_STATUS"),
        ({"status": "PENDING"}, "INVALID_STATUS"),
        ({"ordering": "password"}, "INVALID_ORDERING"),
        ({"ordering": "-created_by__password"}, "INVALID_ORDERING"),
        ({"created_at__gte": "yesterday"}, "INVALID_DATE"),
        ({"created_at__lte": "2024-13-45"}, "INVALID_DATE"),
        ({"created_at__gte": "99999-01-01"}, "INVALID_DATE"),
        ({"created_at__gte": "0001-01-01T00:00:00+14:00"}, "INVALID_DATE"),
        ({"priority": "asap"}, "INVALID_FILTER"),
        ({"created_by": "alice"}, "INVALID_FILTER"),
        ({"created_by": "1.5"}, "INVALID_FILTER"),
        ({"created_by": "9" * 30}, "INVALID_FILTER"),
        ({"progress_percentage__gte": "101"}, "INVALID_FILTER"),
        ({"progress_percentage__gte": "lots"}, "INVALID_FILTER"),
        ({"search": "x" * 201}, "INVALID_FILTER"),
    ],
)
def test_bad_list_parameters_are_a_400_with_a_precise_error_code(personas, alice, params, error_code):
    AIJobFactory(brand=personas.brand_a, created_by=personas.alice)

    response = alice.get("/ai/jobs/", params)

    assert response.status_code == 400, response.content
    assert response.json()["error_code"] == error_code


@pytest.mark.parametrize("params", [{"page": "abc"}, {"page": "0"}, {"page": "999"}])
def test_a_page_that_does_not_exist_is_a_404(personas, alice, params):
    response = alice.get("/ai/jobs/", params)

    assert response.status_code == 404
    assert response.json()["error_code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    "params",
    [
        {"created_by": "1e400"},
        {"search": "%_\\'\""},
        {"search": "\x00"},
        {"progress_percentage__gte": "1e400"},
        {"is_async": "maybe"},
        {"created_at__lte": "9999-12-31T23:59:59-12:00"},
        {"created_at__gte": "0098-06-19T11:32:25.5+21:57"},  # PostgreSQL refuses offsets past 16 h
        {"created_at__lte": "2024-01-01T00:00:00-23:59"},
    ],
)
def test_extreme_but_valid_values_are_never_a_500(personas, alice, params):
    response = alice.get("/ai/jobs/", params)

    assert response.status_code in {200, 400}
    assert "error_code" in response.json() or "results" in response.json()


@pytest.mark.parametrize("scope", ["", "world", "COMPANY"])
def test_an_unknown_dashboard_scope_is_a_400(personas, alice, scope):
    response = alice.get("/ai/jobs/dashboard/", {"scope": scope})

    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_SCOPE"


def test_an_update_with_malformed_json_changes_nothing(personas, alice):
    job = AIJobFactory(brand=personas.brand_a, created_by=personas.alice, description="kept")

    response = alice.generic("PATCH", f"/ai/jobs/{job.pk}/", '{"description": ', content_type="application/json")

    assert response.status_code == 400 and response.json()["error_code"] == "MALFORMED_JSON"
    job.refresh_from_db()
    assert job.description == "kept"


def test_an_unknown_method_is_a_405_with_an_error_code(personas, alice):
    response = alice.put("/ai/jobs/", CHAT, format="json")

    assert response.status_code == 405
    assert response.json()["error_code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize("url", ["/ai/jobs/", "/ai/jobs/1/", "/ai/jobs/dashboard/", "/ai/job-types/"])
def test_options_is_a_405_in_the_error_shape(personas, alice, url):
    response = alice.options(url)

    assert response.status_code == 405
    assert response.json()["error_code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize("url", ["/ai/nothing-here/", "/ai/job-types/0.5/", "/auth/nowhere/", "/api/nowhere"])
def test_an_unknown_url_is_a_json_404(alice, url):
    response = alice.get(url)

    assert response.status_code == 404
    assert response.json()["error_code"] == "NOT_FOUND"


def test_an_unknown_web_page_keeps_an_html_404(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_a_job_type_given_another_schema_validates_against_the_new_one(job_types):
    """validate_input_data keeps a job type's validator on it: only for as long as the schema is the same."""
    from ai_core.models import AIJobType
    from ai_core.services import JobValidationError, validate_input_data

    job_type = AIJobType.objects.get(name="chat_completion")
    validate_input_data(job_type, input_for("chat_completion"))
    job_type.input_schema = {"type": "object", "required": ["prompt_id"]}

    with pytest.raises(JobValidationError, match="prompt_id"):
        validate_input_data(job_type, input_for("chat_completion"))


# --- lone surrogates and Idempotency-Key ----------------------------------------------------------------


def _chat_with(**input_data) -> dict:
    return {
        "job_type": "chat_completion",
        "input_data": {"messages": [{"role": "user", "content": "hi"}], **input_data},
    }


@pytest.mark.parametrize(
    "body",
    [
        _chat_with(messages=[{"role": "user", "content": "a\ud800b"}]),  # in a value
        _chat_with(**{"k\udfff": 1}),  # in a key
        _chat_with(model="gpt-4o\ud800"),  # in the model
        {**CHAT, "description": "\udc00"},  # outside input_data: every JSON body is read the same way
    ],
)
def test_a_lone_surrogate_anywhere_in_a_body_is_a_400_invalid_unicode(alice, body):
    # json.dumps writes the lone surrogate as the escape "\ud800": valid JSON, no valid text, and PostgreSQL's
    # jsonb refuses it (it was a 500).
    raw = json.dumps(body)
    assert "\\ud" in raw

    assert_refused(post_raw(alice, raw), 400, "INVALID_UNICODE")


def test_an_escaped_surrogate_pair_is_text_and_accepted(alice):
    raw = json.dumps(_chat_with(messages=[{"role": "user", "content": "smile \U0001f600"}]))
    assert "\\ud83d\\ude00" in raw

    response = post_raw(alice, raw)

    assert response.status_code == 201, response.content
    assert response.json()["input_data"]["messages"][0]["content"] == "smile \U0001f600"


def test_an_update_with_a_lone_surrogate_is_a_400_and_changes_nothing(personas, alice):
    job = AIJobFactory(brand=personas.brand_a, created_by=personas.alice, description="kept")
    before = job.input_data

    for body in (
        {"description": "x\ud800"},
        {"input_data": {"messages": [{"role": "user", "content": "\ud800"}]}},
        {"input_data": {"messages": [{"role": "user", "content": "hi"}], "model": "\udbff"}},
    ):
        response = alice.generic("PATCH", f"/ai/jobs/{job.pk}/", json.dumps(body), content_type="application/json")

        assert response.status_code == 400, response.content
        assert response.json()["error_code"] == "INVALID_UNICODE"
    job.refresh_from_db()
    assert (job.description, job.input_data) == ("kept", before)


# --- numbers in URLs and query strings ------------------------------------------------------------------


@pytest.mark.parametrize("pk", ["\u00b36", "\u0663", "9223372036854775808", "9" * 5000])
@pytest.mark.parametrize(
    "url", ["/ai/jobs/{}/", "/ai/providers/credentials/{}/", "/ai/providers/quotas/{}/", "/ai/webhooks/{}/"]
)
def test_an_id_that_is_no_ascii_number_or_past_bigint_is_a_404(alice, url, pk):
    # "³6" passed str.isdigit() and failed int() (found by the fuzzer), 2^63 reached the bigint column: 500s.
    response = alice.get(url.format(pk))

    assert response.status_code == 404, response.content[:300]
    assert response.json()["error_code"].endswith("NOT_FOUND")


@pytest.mark.parametrize("value", ["\u00b3", "\u0663", "9223372036854775808"])
def test_a_page_size_or_days_that_is_no_ascii_number_is_a_400(alice, value):
    assert alice.get("/ai/jobs/", {"page_size": value}).json()["error_code"] == "INVALID_PAGE_SIZE"
    assert alice.get("/ai/usage/dashboard/", {"days": value}).json()["error_code"] == "INVALID_DAYS"


@pytest.mark.parametrize("value", ["\u00b3", "\u0663", "9223372036854775808"])
def test_a_brand_header_that_is_no_ascii_number_names_no_brand(personas, client_for, value):
    client = client_for(personas.alice)

    response = client.get("/ai/jobs/", HTTP_X_BRAND_ID=value)

    assert 400 <= response.status_code < 500 and "error_code" in response.json()

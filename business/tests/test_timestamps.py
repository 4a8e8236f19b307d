"""Every timestamp the API writes has one format: DRF's (ISO 8601, UTC as "Z"), in REST bodies and SSE frames."""

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from rest_framework import serializers

from ai_core import services, streams
from business.timestamps import api_timestamp

UTC_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 29, 4, 48, 22, 240652, tzinfo=UTC),
        datetime(2026, 11, 29, 4, 48, 22, tzinfo=UTC),  # no microseconds
        datetime(2026, 11, 29, 5, 48, 22, 1, tzinfo=timezone(timedelta(hours=1))),  # another offset: to UTC
    ],
)
def test_api_timestamp_is_what_drf_renders(value):
    assert api_timestamp(value) == serializers.DateTimeField().to_representation(value)
    assert UTC_Z.match(api_timestamp(value))


def test_api_timestamp_keeps_none():
    assert api_timestamp(None) is None


@pytest.mark.django_db
def test_an_sse_event_writes_its_instant_as_the_rest_detail_does(personas, client_for, job_types):
    job, _ = services.job_create(
        brand=personas.brand_a,
        user=personas.alice,
        job_type="chat_completion",
        input_data={"messages": [{"role": "user", "content": "hi"}]},
    )

    events, _progress, _final = streams.job_stream_tick(job_pk=job.pk, cursor=streams.EventCursor())
    detail = client_for(personas.alice, personas.brand_a).get(f"/ai/jobs/{job.job_id}/").json()

    assert [e["at"] for e in events] == [e["at"] for e in detail["events"]]
    assert UTC_Z.match(events[0]["at"]) and UTC_Z.match(detail["created_at"])


@pytest.mark.django_db
def test_the_provider_catalogue_writes_price_dates_in_the_same_format(personas, client_for):
    providers = client_for(personas.alice, personas.brand_a).get("/ai/providers/").json()

    dates = [m["price"]["effective_from"] for p in providers for m in p["models"] if m["price"]["effective_from"]]
    assert dates and all(UTC_Z.match(d) for d in dates)

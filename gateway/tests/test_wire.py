"""The gateway's wire format takes the same OpenAI chat parameters as /ai/openai/chat/ and the engine."""

from ai_providers.clients.families import CHAT_PARAMS
from gateway import wire


def test_the_gateway_checks_the_type_of_exactly_the_chat_parameters_a_job_carries():
    assert set(wire._PARAMS) == set(CHAT_PARAMS)

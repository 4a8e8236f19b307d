import pytest

from testing.providers import catalogue, fake_llm, llm_env  # noqa: F401


@pytest.fixture
def gateway(live_asgi, personas, llm_env):  # noqa: F811  (llm_env: the fixture imported above)
    """The live ASGI app's address, with the personas and the fake LLM server's environment."""
    return live_asgi

from ai_providers.tests.fixtures import catalogue, fake_llm, llm_env  # noqa: F401

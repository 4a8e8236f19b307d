from testing.providers import catalogue, fake_llm, llm_env  # noqa: F401

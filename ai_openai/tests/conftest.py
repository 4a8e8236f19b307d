from ai_providers.tests.fixtures import fake_llm, fast_password_hasher, llm_env  # noqa: F401

from ai_core.tests.conftest import make_brands, workers  # noqa: F401
from testing.providers import catalogue, fake_llm, llm_env  # noqa: F401

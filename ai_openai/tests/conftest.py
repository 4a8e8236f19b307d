from ai_core.tests.conftest import make_brands, workers  # noqa: F401
from ai_providers.tests.fixtures import catalogue, fake_llm, llm_env  # noqa: F401

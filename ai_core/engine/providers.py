"""Which provider client answers a model. The provider catalogue extends this one function."""

from ai_providers.clients.base import PermanentProviderError, ProviderClient
from ai_providers.clients.echo import EchoClient


def client_for_model(model: str, brand=None) -> ProviderClient:
    """The client for `model` on behalf of `brand` (whose company may bring its own credentials).

    Raises PermanentProviderError for a model nobody serves: another attempt would not change that.
    """
    if model.startswith("echo"):
        return EchoClient()
    raise PermanentProviderError(
        f"No provider serves the model '{model}'", error_code="MODEL_NOT_FOUND", status_code=400
    )

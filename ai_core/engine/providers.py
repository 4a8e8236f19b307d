"""Which provider client answers a model: the provider catalogue decides (ai_providers.services)."""

from ai_providers.capacity import CapacityKey
from ai_providers.clients.base import ChatRequest, ChatResult, PermanentProviderError, ProviderClient
from ai_providers.clients.common import estimate_tokens
from ai_providers.selectors import ModelChoice
from ai_providers.services import endpoint_for_model, request_bounded
from business.errors import ApplicationError


class CatalogueBound:
    """The model's client, calling it under the catalogue's rules: the model family, and the one output bound
    the job's quota reservation assumed (ai_providers.services.request_bounded), so no charge exceeds it.
    """

    def __init__(self, client: ProviderClient, choice: ModelChoice, capacity_key: CapacityKey) -> None:
        self.client, self.choice, self.name = client, choice, client.name
        self.capacity_key = capacity_key  # the endpoint and model whose rate limits the call draws from

    def tokens_at_most(self, request: ChatRequest) -> int:
        """What the call may count against a tokens-per-minute limit: the prompt (estimated) and the output
        bound, as providers count it before the answer."""
        if request.operation == "embedding":
            return estimate_tokens("".join(request.options.get("input") or []))
        prompt = estimate_tokens("".join(str(m.get("content") or "") for m in request.messages))
        return prompt + (self.bound(request).max_tokens or 0)

    def bound(self, request: ChatRequest) -> ChatRequest:
        """The request under the catalogue's rules (also what a provider Batch API line asks)."""
        return request_bounded(request, self.choice)

    def chat(self, request: ChatRequest, *, on_progress, should_stop) -> ChatResult:
        if request.operation == "embedding":
            embed = getattr(self.client, "embed", None)
            if embed is None:
                raise PermanentProviderError(
                    f"Provider '{self.name}' does not serve embeddings", error_code="EMBEDDINGS_NOT_SUPPORTED"
                )
            return embed(request, should_stop=should_stop)
        return self.client.chat(self.bound(request), on_progress=on_progress, should_stop=should_stop)


def client_for_model(model: str, company_id: int | None = None) -> CatalogueBound:
    """The client for `model` on behalf of a company (which may bring its own credentials).

    Raises PermanentProviderError for a model nobody serves or a provider without a key: another attempt
    would not change that.
    """
    try:
        client, choice, capacity_key = endpoint_for_model(model=model, company_id=company_id)
    except ApplicationError as exc:
        raise PermanentProviderError(exc.detail, error_code=exc.error_code, status_code=400) from None
    return CatalogueBound(client, choice, capacity_key)

"""factory_boy factories for the /v1/ gateway: the brand API key a caller presents and the chat-completion
parameters it sends (the gateway has no models of its own: every call is an ordinary job of the key's brand).

    key = GatewayKeyFactory(brand=brand, user=admin).raw_key
    client.chat.completions.create(**ChatCompletionFactory(messages=user("hi")))
"""

import factory

from business.tests.factories import ApiKeyFactory


class GatewayKeyFactory(ApiKeyFactory):
    """A brand API key for /v1/ (every scope by default, as `api_key_create` gives)."""

    name = "sdk"


class ChatCompletionFactory(factory.DictFactory):
    """The parameters of one /v1/chat/completions call: an echo model (no provider needed) and one user message."""

    model = "echo-1"
    messages = factory.LazyFunction(lambda: [{"role": "user", "content": "hello"}])

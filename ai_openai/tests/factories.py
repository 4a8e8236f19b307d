"""factory_boy factories for the OpenAI surface: /ai/openai/chat/ request bodies (the OpenAIJob extension is
written by the services with its job: make the job with AIJobFactory or through the API).

post("/ai/openai/chat/", ChatRequestFactory(model="o3-mini", reasoning_effort="low"))
"""

import factory


class ChatRequestFactory(factory.DictFactory):
    """The body of POST /ai/openai/chat/: one user message by default; any other parameter is passed as given."""

    messages = factory.LazyFunction(lambda: [{"role": "user", "content": "hi"}])

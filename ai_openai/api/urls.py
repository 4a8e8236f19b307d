from django.urls import path

from ai_openai.api.views import ChatModelsView, ChatView

urlpatterns = [
    path("chat/", ChatView.as_view(), name="openai-chat"),
    path("chat/models/", ChatModelsView.as_view(), name="openai-chat-models"),
]

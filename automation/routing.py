"""WebSocket routes (``config.asgi``)."""

from django.urls import path

from automation.consumers import LiveConsumer

websocket_urlpatterns = [
    path("ws/live/", LiveConsumer.as_asgi()),
]

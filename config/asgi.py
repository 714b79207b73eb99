"""ASGI entry point: HTTP to Django, WebSockets (live updates) through the session's login.

``daphne`` serves it (the Procfile's ``web``); static files are served by whitenoise inside
the Django application, as under WSGI. HTTP requests run their synchronous code on a
fixed set of threads that keep their database connections (``config.asgi_handler``).
"""

import os

from config.asgi_handler import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_asgi_application()  # sets Django up before the routes are imported

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from automation.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)

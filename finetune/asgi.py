"""ASGI entry point served by daphne (through `python -m finetune.serve`): HTTP through Django, with a bound on the
requests run at once per process (finetune.web), websockets through Channels."""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "finetune.settings")
django.setup(set_prefix=False)

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry loaded above)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from finetune.routing import websocket_urlpatterns  # noqa: E402
from finetune.web import BoundedASGIHandler  # noqa: E402

django_asgi_app = BoundedASGIHandler()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

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

from accounts.ws_auth import TokenAuthMiddleware  # noqa: E402
from finetune.routing import websocket_urlpatterns  # noqa: E402
from finetune.web import BoundedASGIHandler  # noqa: E402

django_asgi_app = BoundedASGIHandler()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Session cookie (browsers) or `Authorization: Token <key>` (scripts, the Python client).
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)))
        ),
    }
)


def _leave_forms_to_django() -> None:
    """Twisted (under daphne) parses every multipart POST body itself before the app sees it: it reads the whole
    upload into memory and answers a body it cannot parse (an empty multipart form) with a bare `400` that has no
    body and no Content-Type. Django parses forms anyway (streaming uploads to disk): turn Twisted's parsing off."""
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:  # served by another ASGI server
        return
    if getattr(WebRequest, "_finetune_forms_left_to_django", False):
        return
    original_init = WebRequest.__init__

    def __init__(self: WebRequest, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False

    WebRequest.__init__ = __init__  # type: ignore[method-assign]
    WebRequest._finetune_forms_left_to_django = True  # type: ignore[attr-defined]


_leave_forms_to_django()

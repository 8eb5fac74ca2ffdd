"""WSGI entry point (HTTP only; production serves ASGI on daphne)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "finetune.settings")
application = get_wsgi_application()

"""Sign-in throttles: per client IP and per submitted username (cache-backed, so shared by every web process). The API's
sign-in and the admin's sign-in form (accounts.admin) count against the same buckets. The client IP is
accounts.signin.client_ip: X-Forwarded-For is trusted only behind a proxy (BEHIND_PROXY sets DRF's NUM_PROXIES)."""

from __future__ import annotations

import hashlib
from typing import Any

from rest_framework.throttling import SimpleRateThrottle

from accounts.signin import client_ip


class ClientIPThrottle(SimpleRateThrottle):
    """A throttle keyed on the client's address as accounts.signin.client_ip gives it."""

    def get_ident(self, request: Any) -> str:
        return client_ip(request)

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginIPThrottle(ClientIPThrottle):
    """Sign-in attempts per client IP."""

    scope = "login_ip"


class LoginUsernameThrottle(SimpleRateThrottle):
    """Sign-in attempts per username, whichever IPs they come from."""

    scope = "login_username"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        # A DRF request's parsed body, or a plain form post (the admin's sign-in).
        data = request.data if hasattr(request, "data") else request.POST
        username = data.get("username") if hasattr(data, "get") else None
        if not isinstance(username, str) or not username.strip():
            return None
        ident = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
        return self.cache_format % {"scope": self.scope, "ident": ident}


class RegisterIPThrottle(ClientIPThrottle):
    """Sign-ups per client IP."""

    scope = "register_ip"


SIGN_IN_THROTTLES = (LoginIPThrottle, LoginUsernameThrottle)


def sign_in_wait(request: Any) -> float | None:
    """Run the sign-in throttles on a sign-in outside DRF (the admin's form), counting in the same buckets as the API:
    None when the attempt may go on, else the seconds to wait. Like DRF, every throttle is asked and counts."""
    waits = []
    for throttle in (cls() for cls in SIGN_IN_THROTTLES):
        if not throttle.allow_request(request, None):
            waits.append(float(throttle.wait() or 0))
    return max(waits) if waits else None


def throttled_message(wait: float | None) -> str:
    return f"Too many sign-in attempts. Try again in {int(wait or 60) + 1} seconds."

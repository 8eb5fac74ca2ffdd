"""In Chromium against daphne: sign up, sign out, sign in, save a Hugging Face token (fake Hub), see live
notifications from a Celery worker, sign out. Screenshots of every page land in test-artifacts/."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_sign_up_sign_in_save_hf_token_sign_out(page, daphne_url, celery_worker_process, artifacts_dir):
    shots = artifacts_dir / "foundation"
    shots.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> None:
        # Full-page captures of a scrolled page smear the sticky top bar: scroll to the top first.
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / name), full_page=True)

    # A deep link while signed out sends the user to the sign-in page, keeping where they wanted to go.
    page.goto(f"{daphne_url}/settings")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_role("link", name=re.compile("sign up|create", re.I)).first.click()
    expect(page).to_have_url(re.compile(r"/signup"))
    page.get_by_label("Username").fill("grace")
    page.get_by_label("Email").fill("grace@example.com")
    page.get_by_label("Password", exact=True).fill("12345678")
    page.get_by_label("Confirm password").fill("12345678")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_text(re.compile("too common|entirely numeric", re.I)).first).to_be_visible()
    shot("01-signup-error.png")

    page.get_by_label("Password", exact=True).fill("Analytical-Engine-1843")
    page.get_by_label("Confirm password").fill("Analytical-Engine-1843")
    shot("02-signup.png")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_test_id("user-menu")).to_contain_text("grace")
    expect(page).to_have_url(re.compile(r"/settings$"))  # back where the deep link pointed
    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_test_id("health-card")).to_contain_text(re.compile("Database", re.I))

    # Live notification: browser -> daphne -> Celery worker -> Redis channel layer -> daphne -> browser.
    page.get_by_role("button", name="Send test notification").click()
    expect(page.get_by_test_id("notifications-list")).to_contain_text("Celery worker", timeout=30000)
    shot("03-dashboard.png")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login"))
    page.get_by_label("Username").fill("grace")
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("form-error")).to_contain_text("incorrect")
    shot("04-login-error.png")
    page.get_by_label("Password").fill("Analytical-Engine-1843")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("user-menu")).to_contain_text("grace")

    page.get_by_role("link", name="Settings").click()
    expect(page).to_have_url(re.compile(r"/settings$"))
    page.get_by_label("Hugging Face token").fill("hf_notARealToken0000")
    page.get_by_role("button", name="Save and validate").click()
    expect(page.get_by_text(re.compile("rejected this token")).first).to_be_visible()
    shot("05-settings-invalid-token.png")
    page.get_by_label("Hugging Face token").fill("hf_validTokenForAlice1234")
    page.get_by_role("button", name="Save and validate").click()
    expect(page.get_by_test_id("hf-token-status")).to_contain_text("1234")
    expect(page.get_by_test_id("hf-token-status")).to_contain_text("alice-hf")
    assert "hf_validTokenForAlice1234" not in page.content()
    shot("06-settings-token-saved.png")

    # A reload of the deep link keeps the state (the token is stored server-side, shown by its last 4 only).
    page.reload()
    expect(page.get_by_test_id("hf-token-status")).to_contain_text("1234")

    # Notifications: save a webhook with a secret, then "Send a test" reaches a local receiver, signed.
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append({"headers": dict(self.headers), "body": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        card = page.get_by_test_id("notifications-card")
        expect(card.get_by_test_id("webhook-test")).to_be_disabled()  # nothing saved yet
        card.get_by_label("Webhook URL").fill(f"http://127.0.0.1:{hook.server_address[1]}/hooks")
        card.get_by_label("Webhook secret").fill("grace-webhook-secret")
        card.get_by_test_id("notify-email").uncheck()
        card.get_by_role("button", name="Save notifications").click()
        expect(card.get_by_test_id("notifications-saved")).to_be_visible()
        card.get_by_test_id("webhook-test").click()
        expect(card.get_by_test_id("webhook-test-result")).to_contain_text("Delivered (signed)")
        card.scroll_into_view_if_needed()
        shot("06b-settings-notifications-tested.png")
    finally:
        hook.shutdown()
    assert received and received[0]["body"]["event"] == "test" and received[0]["body"]["user"] == "grace"
    assert received[0]["headers"]["X-Finetune-Signature"].startswith("sha256=")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login"))
    shot("07-signed-out.png")

    from accounts.models import User

    stored = User.objects.get(username="grace")
    assert stored.hf_username == "alice-hf" and "hf_valid" not in stored.hf_token_encrypted
    assert (
        stored.notify_email is False
        and stored.has_webhook_secret
        and "grace-webhook" not in stored.webhook_secret_encrypted
    )

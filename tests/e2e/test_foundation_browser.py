"""In Chromium against daphne: sign up, sign out, sign in, save a Hugging Face token (fake Hub), see live
notifications from a Celery worker, sign out. Screenshots of every page land in test-artifacts/."""

from __future__ import annotations

import re

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

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login"))
    shot("07-signed-out.png")

    from accounts.models import User

    stored = User.objects.get(username="grace")
    assert stored.hf_username == "alice-hf" and "hf_valid" not in stored.hf_token_encrypted

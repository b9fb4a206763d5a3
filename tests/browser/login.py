"""Log in through the console's login page, as a person does (every browser walk starts so)."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.factories import LOCAL_PASSWORD


def log_in(page: Page, username: str, password: str = LOCAL_PASSWORD) -> None:
    page.goto("/login/")
    page.get_by_label("Address or user name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()

"""The browser harness itself: the front page opens in Korean, switches to English, passes axe."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import PHONE, assert_accessible

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_the_front_page_opens_in_korean_and_switches_to_english(page):
    page.goto("/")
    assert page.locator("html").get_attribute("lang") == "ko"
    assert_accessible(page, context="home (ko)")
    with page.expect_navigation():
        page.select_option("#language-switch", "en")  # language.js submits the form
    assert page.locator("html").get_attribute("lang") == "en"


def test_the_front_page_works_on_a_phone(new_page):
    page = new_page(viewport=PHONE)
    page.goto("/")
    assert page.locator("main h1").is_visible()
    assert_accessible(page, context="home (ko, phone)")

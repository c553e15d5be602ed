import time

from playwright.sync_api import expect

from tests.browser.test_sign_in_journey import *  # noqa


def test_probe(live_app, new_page):
    page = new_page()
    t = time.monotonic()

    def lap(m):
        print(f"{time.monotonic() - t:6.2f} {m}")

    page.goto(live_app.url)
    lap("goto")
    page.get_by_label("Username").fill("mia")
    lap("username field")
    page.get_by_label("Password", exact=True).fill(MEMBER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    lap("click")
    expect(chat_heading(page)).to_be_visible(timeout=15000)
    lap("chat")
    login_cookie(page)
    lap("cookie")
    print(page.get_by_test_id("stSidebarNav").inner_text())
    print(
        [
            (l.get_attribute("href"), l.inner_text())
            for l in page.get_by_test_id("stSidebarNav").get_by_role("link").all()
        ]
    )
    print(page.get_by_role("button", name="Sign in").count(), "sign in buttons after login")
    print(page.get_by_test_id("stMain").inner_text()[:500])
    page.get_by_test_id("stSidebar").get_by_role("button", name="Sign out").click()
    lap("signout click")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    lap("form back")
    print(page.get_by_test_id("stMain").inner_text()[:500])

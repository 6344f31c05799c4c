"""The tracking page in a real browser (Debian's chromium, headless, driven by Selenium through
/usr/bin/chromedriver): sign in, search an application by id, see its timeline with the
authority's reply, move around by keyboard only, and keep a screenshot as a test artefact
(var/test-artifacts/tracking-page.png). Chromium missing: skipped locally, a FAILURE under CI=true.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from hub.status import REPLY_RECEIVED
from hub.tracking.api import TrackingHttp
from hub.tracking.auth import TokenRegistry, hash_token
from hub.tracking.page import COOKIE
from hub.tracking.store import open_store
from tests.integration.tracking_support import Life, lives

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TOKEN = "browser-test-token-portal-a"


def _need_chromium() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        message = (f"{', '.join(missing)} missing: install the Debian packages chromium and chromium-driver "
                   "(scripts/bootstrap.sh does as root)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Life]]:
    """The tracker's HTTP app on loopback over a seeded SQLite store; yields (base URL, the life
    of an application that was delivered and got a reply)."""
    folder = tmp_path_factory.mktemp("tracking-page")
    store = open_store(f"sqlite:///{folder / 'tracking.db'}")
    applications = lives("portal-a", time.time() - 7200)
    store.ingest([e for life in applications for e in life.events])
    tokens = folder / "tokens.toml"
    tokens.write_text(f'[[tokens]]\nname = "a"\nportal = "portal-a"\nsha256 = "{hash_token(TOKEN)}"\n')
    server = make_server("127.0.0.1", 0, TrackingHttp(store, TokenRegistry.from_file(tokens), page_size=50),
                         threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="browser-test-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.socket.getsockname()[1]}", applications[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(30)
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _need_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1400", "--lang=en"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _tab_to(driver, predicate, what: str, limit: int = 40):
    """Press Tab until the focused element satisfies ``predicate`` (keyboard only, as a user would)."""
    from selenium.webdriver.common.keys import Keys

    for _ in range(limit):
        active = driver.switch_to.active_element
        if predicate(active):
            return active
        active.send_keys(Keys.TAB)
    raise AssertionError(f"{what} was not reached with {limit} presses of Tab")


def _wait(driver, predicate, what: str, timeout: float = 30.0) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: predicate(d), message=f"waiting for {what}")


def test_sign_in_search_an_id_and_see_its_timeline_with_the_reply(browser, delivered) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser
    base, life = delivered
    reply = next(e for e in life.events if e.event == REPLY_RECEIVED)

    # not signed in: the page sends us to the login form, whose field has a label
    driver.get(f"{base}/ui/")
    _wait(driver, lambda d: d.current_url.endswith("/ui/login"), "the login page")
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert driver.find_element(By.CSS_SELECTOR, "label[for=token]").text == "Access token"

    # a wrong token: an error, still on the login page
    field = driver.find_element(By.ID, "token")
    field.send_keys("not-the-token", Keys.ENTER)
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[role=alert]"), "the login error")
    assert driver.current_url.endswith("/ui/login")

    # the right token, submitted with Enter
    driver.find_element(By.ID, "token").send_keys(TOKEN, Keys.ENTER)
    _wait(driver, lambda d: d.current_url.endswith("/ui/"), "the overview")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Tracking overview"
    cookie = driver.get_cookie(COOKIE)
    assert cookie["httpOnly"] is True and TOKEN not in cookie["value"]  # a signed session, not the token
    assert "expiry" not in cookie  # a session cookie; the server checks the 12 hours

    # keyboard only: Tab from the top of the page to the search field, type the id, Enter
    driver.find_element(By.TAG_NAME, "body").click()
    search = _tab_to(driver, lambda el: el.get_attribute("id") == "search-id", "the search field")
    outline = driver.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid", "the focused field has no visible focus outline (inline CSS not applied?)"
    search.send_keys(life.message_id, Keys.ENTER)
    _wait(driver, lambda d: "/ui/trace?" in d.current_url, "the timeline")

    timeline = driver.find_element(By.CSS_SELECTOR, "table.timeline")
    headers = [th.text for th in timeline.find_elements(By.CSS_SELECTOR, "thead th")]
    assert headers[:2] == ["Time (UTC)", "Event"]
    rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in timeline.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert [r[1] for r in rows] == [e.event for e in life.events]
    reply_row = rows[-1]
    assert reply_row[1] == "reply_received"
    assert reply.detail["message_type"] in reply_row[-1] and reply.transport_message_id in reply_row[6]
    page = driver.find_element(By.TAG_NAME, "main").text
    assert life.message_id in page and life.correlation_id in page

    # nothing was fetched from anywhere (no style sheet, script, font or image requests)
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "tracking-page.png"
    with contextlib.suppress(FileNotFoundError):
        shot.unlink()
    assert driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # keyboard again: Tab to the "Dead letters" link and follow it with Enter
    link = _tab_to(driver, lambda el: el.tag_name == "a" and el.text == "Dead letters", "the Dead letters link")
    link.send_keys(Keys.ENTER)
    _wait(driver, lambda d: d.current_url.endswith("/ui/dead-letters"), "the dead-letter page")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Dead letters"

    # signing out ends the session
    driver.get(f"{base}/ui/logout")
    _wait(driver, lambda d: d.current_url.endswith("/ui/login"), "the login page after signing out")
    driver.get(f"{base}/ui/")
    _wait(driver, lambda d: d.current_url.endswith("/ui/login"), "the login page again")

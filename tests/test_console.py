"""The sandbox console in headless Chromium (Debian's chromium + chromium-driver, via Selenium)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import ROOT, DevHost

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromium-driver are missing: `make test` installs them (apt-get)")
    os.environ["SE_AVOID_STATS"] = "true"  # Selenium must not phone home
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-")
    # No network beyond loopback here: keep Chromium from trying (it retries noisily).
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-quic", "--window-size=1400,1000", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait(driver: WebDriver, seconds: float = 15) -> WebDriverWait[WebDriver]:
    # The lists re-render every second: an element a condition found can go stale before the
    # condition reads it (element_to_be_clickable does), which only means "look again".
    return WebDriverWait(
        driver,
        seconds,
        poll_frequency=0.1,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    )


def test_send_an_sms_and_see_it_delivered(browser: WebDriver, devhost: DevHost) -> None:
    browser.get(f"{devhost.url}/sandbox/")
    text = f"Console test {uuid.uuid4().hex[:8]} <b>not bold</b>"
    body = browser.find_element(By.CSS_SELECTOR, "#sms-form textarea[name=body]")
    body.clear()
    body.send_keys(text)
    browser.find_element(By.CSS_SELECTOR, "#sms-form button").click()
    wait(browser).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "sms-result"), "201")
    )
    card = f"//ol[@id='messages']/li[div[@class='bubble' and text()={text!r}]]"
    # The badge is upper-cased by CSS, so its data-status is what to wait for.
    wait(browser).until(
        expected_conditions.presence_of_element_located(
            (By.XPATH, f"{card}//span[@data-status='delivered']")
        )
    )
    assert browser.find_elements(By.XPATH, f"{card}//b") == []  # shown as text, never as HTML
    assert "1 segment(s)" in browser.find_element(By.XPATH, card).text


def test_place_a_call_and_see_what_was_heard(browser: WebDriver, devhost: DevHost) -> None:
    browser.get(f"{devhost.url}/sandbox/")
    words = f"Your code is {uuid.uuid4().int % 10**6:06d}"
    message = browser.find_element(By.CSS_SELECTOR, "#call-form input[name=message]")
    message.clear()
    message.send_keys(words)
    browser.find_element(By.CSS_SELECTOR, "#call-form button").click()
    wait(browser).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "call-result"), "201")
    )
    heard = f"//ol[@id='calls']/li[.//ol[@class='heard']/li[contains(., {words!r})]]"
    wait(browser).until(
        expected_conditions.presence_of_element_located(
            (By.XPATH, f"{heard}//span[@data-status='completed']")
        )
    )
    assert f"“{words}” (woman)" in browser.find_element(By.XPATH, heard).text
    if os.environ.get("UPDATE_SCREENSHOT"):
        browser.save_screenshot(str(ROOT / "docs" / "sandbox-console.png"))


def test_a_refusal_is_shown(browser: WebDriver, devhost: DevHost) -> None:
    browser.get(f"{devhost.url}/sandbox/")
    to = browser.find_element(By.CSS_SELECTOR, "#sms-form input[name=to]")
    to.clear()
    to.send_keys("+15005550001")
    browser.find_element(By.CSS_SELECTOR, "#sms-form button").click()
    wait(browser).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "sms-result"), "422")
    )
    assert "Invalid 'to' phone number" in browser.find_element(By.ID, "sms-result").text


def test_every_voice_the_console_offers_is_one_the_app_takes(devhost: DevHost) -> None:
    page = (ROOT / "devhost" / "console" / "index.html").read_text()
    voices = re.findall(r"<option>([^<]*)</option>", page)
    answers = [
        requests.post(
            f"{devhost.url}/api/MakeCall", json={"to": "+14155550162", "voice": voice}, timeout=10
        ).status_code
        for voice in voices
    ]
    assert (voices, answers) == (
        ["woman", "man", "Polly.Joanna", "Google.en-US-Standard-C"],
        [201, 201, 201, 201],
    )


def start_broadcast(browser: WebDriver, numbers: list[str], body: str) -> str:
    browser.get(f"{browser_base(browser)}/sandbox/")
    to = browser.find_element(By.CSS_SELECTOR, "#broadcast-form textarea[name=to]")
    to.clear()
    to.send_keys("\n".join(numbers))
    message = browser.find_element(By.CSS_SELECTOR, "#broadcast-form input[name=body]")
    message.clear()
    message.send_keys(body)
    browser.find_element(By.CSS_SELECTOR, "#broadcast-form button").click()
    wait(browser).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "broadcast-result"), "202")
    )
    found = re.search(
        r"202: (b[0-9a-f]+), (\d+) accepted", browser.find_element(By.ID, "broadcast-result").text
    )
    assert found is not None and int(found.group(2)) == len(numbers)
    return found.group(1)


def settled[T](browser: WebDriver, action: Callable[[], T]) -> T:
    """`action` on elements of a list the page re-renders every second: an element found
    just before a re-render is stale by the time it is used, so look it up again."""
    done: list[T] = []

    def attempt(_: WebDriver) -> bool:
        try:
            done.append(action())
        except StaleElementReferenceException:
            return False
        return True

    wait(browser).until(attempt, "the element kept going stale")
    return done[0]


def browser_base(browser: WebDriver) -> str:
    return re.sub(r"(https?://[^/]+).*", r"\1", browser.current_url)


def test_a_broadcast_started_here_shows_its_progress_until_done(
    browser: WebDriver, devhost: DevHost
) -> None:
    browser.get(f"{devhost.url}/sandbox/")
    numbers = [f"+1415555{n:04d}" for n in range(2101, 2106)]
    broadcast_id = start_broadcast(browser, numbers, f"Broadcast {uuid.uuid4().hex[:8]}")
    card = f"//ol[@id='broadcasts']/li[@data-id='{broadcast_id}']"
    wait(browser, 60).until(
        expected_conditions.presence_of_element_located(
            (By.XPATH, f"{card}//span[@data-status='completed']")
        )
    )
    text, progress, buttons = settled(
        browser,
        lambda: (
            browser.find_element(By.XPATH, card).text,
            browser.find_element(By.XPATH, f"{card}//progress").get_attribute("value"),
            len(browser.find_elements(By.XPATH, f"{card}//button")),
        ),
    )
    assert "5 recipient(s) · 0 rejected" in text and "sent 5" in text, text
    assert (progress, buttons) == ("1", 0)  # done: nothing left to cancel


def test_a_running_broadcast_is_cancelled_from_the_console(
    browser: WebDriver, devhost: DevHost
) -> None:
    browser.get(f"{devhost.url}/sandbox/")
    numbers = [f"+1415555{n:04d}" for n in range(2201, 2261)]  # 60 at 10 a second: 6 s
    broadcast_id = start_broadcast(browser, numbers, f"Cancel me {uuid.uuid4().hex[:8]}")
    card = f"//ol[@id='broadcasts']/li[@data-id='{broadcast_id}']"
    cancel = f"{card}//button[@class='cancel']"
    wait(browser).until(expected_conditions.element_to_be_clickable((By.XPATH, cancel)))
    settled(browser, lambda: browser.find_element(By.XPATH, cancel).click())
    wait(browser, 30).until(
        expected_conditions.presence_of_element_located(
            (By.XPATH, f"{card}//span[@data-status='canceled']")
        )
    )
    # Through the app, as the console's caller: flagged, and not everyone was sent to.
    view = requests.get(f"{devhost.url}/api/broadcasts/{broadcast_id}", timeout=10).json()
    assert view["cancelled"] is True
    assert view["counts"]["sent"] < len(numbers)


def test_call_the_number_and_see_the_voicemail_the_app_stored(
    browser: WebDriver, devhost: DevHost
) -> None:
    browser.get(f"{devhost.url}/sandbox/")
    caller = f"+1415555{uuid.uuid4().int % 10**4:04d}"
    field = browser.find_element(By.CSS_SELECTOR, "#inbound-form input[name=from]")
    field.clear()
    field.send_keys(caller)
    browser.find_element(By.CSS_SELECTOR, "#inbound-form button").click()
    wait(browser).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "inbound-result"), "201")
    )
    card = f"//ol[@id='voicemails']/li[.//span[contains(., 'From {caller}')]]"
    wait(browser).until(
        expected_conditions.presence_of_element_located(
            (By.XPATH, f"{card}//span[@data-status='completed']")
        )
    )
    text = settled(browser, lambda: browser.find_element(By.XPATH, card).text)
    assert "5 s" in text and "Recording (at Twilio" in text, text
    steps = (
        f"//ol[@id='inbound-calls']/li[.//span[contains(., 'From {caller}')]]//ol[@class='steps']"
    )
    assert "recording callback" in settled(
        browser, lambda: browser.find_element(By.XPATH, steps).text
    )


def test_reply_as_the_phone_then_stop_refuses_the_next_send(
    browser: WebDriver, devhost: DevHost
) -> None:
    browser.get(f"{devhost.url}/sandbox/")
    phone = f"+1415555{uuid.uuid4().int % 700 + 300:04d}"
    to = browser.find_element(By.CSS_SELECTOR, "#sms-form input[name=to]")
    to.clear()
    to.send_keys(phone)
    browser.find_element(By.CSS_SELECTOR, "#sms-form button").click()
    wait(browser).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "sms-result"), "201")
    )
    card = f"//ol[@id='conversations']/li[@data-phone='{phone}']"
    box = f"{card}//form[@class='reply']"
    wait(browser).until(expected_conditions.presence_of_element_located((By.XPATH, box)))
    words = f"Sounds good <i>{uuid.uuid4().hex[:6]}</i>"
    for text in (words, "STOP"):

        def type_in(text: str = text) -> None:
            browser.find_element(By.XPATH, f"{box}//input").send_keys(text)

        settled(browser, type_in)
        settled(browser, lambda: browser.find_element(By.XPATH, f"{box}//button").click())
        wait(browser).until(
            expected_conditions.text_to_be_present_in_element(
                (By.XPATH, f"{box}//p"), "the app answered 200"
            )
        )
    said = f"{card}//li[contains(@class, 'phone')]/div[@class='bubble']"
    wait(browser).until(lambda _: len(browser.find_elements(By.XPATH, said)) == 2)
    assert settled(browser, lambda: [e.text for e in browser.find_elements(By.XPATH, said)]) == [
        words,
        "STOP",
    ]
    assert browser.find_elements(By.XPATH, f"{card}//i") == []  # text, never HTML
    # The app heard it too: the reply is in its conversation, and STOP holds at once.
    page = requests.get(f"{devhost.url}/api/conversations/{phone}", timeout=10).json()
    assert [m["body"] for m in page["messages"]][:2] == ["STOP", words]
    browser.find_element(By.CSS_SELECTOR, "#sms-form button").click()
    wait(browser).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "sms-result"), "409")
    )

"""Drive Open WebUI in headless Chromium: log in, send one prompt, read the streamed answer.

Runs with the Web UI test env's Python (it has selenium; the gpuctl venv does not), started by
tests/test_webui_browser.py. Uses Debian's chromium and chromedriver by path, so Selenium
Manager is never asked to download a browser or a driver (SE_OFFLINE too). Prints one JSON
object on stdout: the answer text, the lengths the answer went through while it streamed, the
timings; and writes the screenshot (also when a step fails, to show where it stopped).

    python drive_chat.py --url URL --email E --password P --prompt TEXT --screenshot PNG
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("SE_OFFLINE", "true")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException, WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# Records every length the newest answer on the page goes through, on each change of the page
# (a MutationObserver, so no render is missed however fast it streams): several lengths are the
# proof that the answer streamed in rather than arriving whole.
RECORDER_JS = """
window.__answerLengths = [];
const record = () => {
  const all = document.querySelectorAll('#response-content-container');
  if (!all.length) return;
  const n = all[all.length - 1].innerText.trim().length;
  const seen = window.__answerLengths;
  if (!seen.length || seen[seen.length - 1] !== n) seen.push(n);
};
window.__answerObserver = new MutationObserver(record);
window.__answerObserver.observe(document.body, {subtree: true, childList: true, characterData: true});
"""


def browser(chromium: str, chromedriver: str, profile: str, log: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", f"--user-data-dir={profile}", "--no-first-run",
                "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console
    service = webdriver.ChromeService(executable_path=chromedriver, log_output=log)
    return webdriver.Chrome(options=options, service=service)


def body_text(driver) -> str:
    try:
        return driver.find_element(By.TAG_NAME, "body").text
    except WebDriverException:
        return ""


def chat_page_or_error(driver):
    """For WebDriverWait: "chat" once the message box can be used, "error" on the error page."""
    boxes = driver.find_elements(By.ID, "chat-input")
    if boxes and boxes[0].is_displayed() and boxes[0].is_enabled():
        return "chat"
    if "Internal Error" in body_text(driver):
        return "error"
    return False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--email", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    ap.add_argument("--driver-log", default=os.devnull)
    ap.add_argument("--console-log", default=os.devnull, help="where to write the page's console")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    result: dict = {"steps": []}
    t0 = time.monotonic()

    def step(name: str) -> None:
        result["steps"].append([name, round(time.monotonic() - t0, 2)])

    waiting_for = "the browser"
    console: list[dict] = []  # the page's console messages, read as they are drained

    with tempfile.TemporaryDirectory(prefix="gpuctl-chromium-") as profile:
        driver = browser(args.chromium, args.chromedriver, profile, args.driver_log)
        step("browser started")
        wait = WebDriverWait(driver, args.timeout)
        try:
            waiting_for = "the login form"
            driver.get(args.url.rstrip("/") + "/auth")
            wait.until(EC.visibility_of_element_located((By.ID, "email"))).send_keys(args.email)
            driver.find_element(By.ID, "password").send_keys(args.password)
            driver.find_element(By.CSS_SELECTOR, "#auth-container button[type=submit]").click()
            step("login submitted")

            waiting_for = "the chat page after logging in"
            if wait.until(chat_page_or_error) == "error":
                # Open WebUI's client shows "500: Internal Error" when its scripts fail to load
                # (net::ERR_NETWORK_CHANGED on a host whose interfaces change: why the test
                # runs in its own network namespace). Fail now, with the console, not at timeout.
                raise WebDriverException("Open WebUI showed its error page after the login; "
                                         "see the browser console")
            step("chat page ready")
            # A new account is greeted with the release notes ("What's New"): close them.
            try:
                WebDriverWait(driver, 3).until(EC.element_to_be_clickable(
                    (By.XPATH, "//button[contains(normalize-space(.), \"Okay, Let's Go!\")]"))).click()
                step("release notes closed")
            except TimeoutException:
                pass
            driver.execute_script(RECORDER_JS)
            waiting_for = "the message box and the send button"
            chat_input = wait.until(EC.element_to_be_clickable((By.ID, "chat-input")))
            chat_input.click()
            chat_input.send_keys(args.prompt)
            wait.until(EC.element_to_be_clickable((By.ID, "send-message-button"))).click()
            step("prompt sent")

            # The answer has arrived when it has text and has stopped changing for 2 s.
            def settled(drv):
                lengths = drv.execute_script("return window.__answerLengths")
                if not lengths or lengths[-1] == 0:
                    return False
                now = time.monotonic()
                if lengths != settled.last:
                    settled.last, settled.since = list(lengths), now
                    return False
                return now - settled.since >= 2.0

            settled.last, settled.since = None, 0.0
            waiting_for = "the answer to appear and stop changing"
            wait.until(settled)
            step("answer settled")
            answers = driver.find_elements(By.ID, "response-content-container")
            result["answer"] = answers[-1].text.strip()
            result["answer_lengths"] = driver.execute_script("return window.__answerLengths")
            result["page_text_has_prompt"] = args.prompt in driver.find_element(By.TAG_NAME, "body").text
            result["ok"] = True
        except (TimeoutException, WebDriverException) as exc:
            result["ok"] = False
            result["error"] = f"waiting for {waiting_for}: {type(exc).__name__}: {exc.msg or ''}".strip()
            result["url"] = driver.current_url
            result["page_text"] = body_text(driver)[-2000:]
        finally:
            driver.save_screenshot(args.screenshot)
            step("screenshot saved")
            with contextlib.suppress(WebDriverException):
                console.extend(driver.get_log("browser"))
            with open(args.console_log, "w") as out:
                for entry in console:
                    out.write(f"{entry.get('level')} {entry.get('message')}\n")
            driver.quit()
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

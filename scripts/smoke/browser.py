#!/usr/bin/env python3
"""The web UI in a real browser: headless Chromium (Debian's package) driven
by Selenium through chromium-driver, against a running api-gateway.

    browser.py GATEWAY_URL OUT_DIR [ADMIN_EMAIL]

Prints one "ok - ..." / "not ok - ..." line per check and saves a screenshot
of each page under OUT_DIR; exits non-zero if any check failed. With
CONSIGNMENT_PID set (consignment-service's process), the admin's ops
dashboard is watched while that process is stopped (SIGSTOP) and resumed.
"""
import os
import re
import signal
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as when
from selenium.webdriver.support.ui import WebDriverWait

URL, OUT = sys.argv[1].rstrip("/"), sys.argv[2]
ADMIN = sys.argv[3] if len(sys.argv) > 3 else None
CONSIGNMENT_PID = int(os.environ["CONSIGNMENT_PID"]) if os.environ.get("CONSIGNMENT_PID") else None
UPSTREAMS = ("user-service", "consignment-service", "vessel-service")
PASSWORD = "correct horse battery"
failed = False


def check(ok, what, detail=""):
    global failed
    print(("ok - " if ok else "not ok - ") + "browser: " + what + ("" if ok else f": {detail}"))
    failed |= not ok
    return ok


def until(wait, condition, otherwise):
    """What `wait.until(condition)` returns, or `otherwise` once it times out."""
    try:
        return wait.until(condition)
    except TimeoutException:
        return otherwise


def browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1200,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(options=options, service=service)


def main():
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shippy-chromium-") as profile:
        driver = browser(profile)
        try:
            run(driver)
        except Exception:  # noqa: BLE001 - any failure is a failed check, with its trace
            check(False, "the walk-through ran to the end", traceback.format_exc().replace("\n", " | "))
            try:
                driver.save_screenshot(os.path.join(OUT, "failure.png"))
            except Exception:  # noqa: BLE001
                pass
        finally:
            driver.quit()
    return 1 if failed else 0


def run(driver):
    wait = WebDriverWait(driver, 15)
    find = driver.find_element
    shot = lambda name: driver.save_screenshot(os.path.join(OUT, name))  # noqa: E731

    def visible(css):
        return wait.until(when.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def fill(form, **fields):
        for name, value in fields.items():
            field = find(By.CSS_SELECTOR, f"{form} [name={name}]")
            field.clear()
            field.send_keys(value)

    driver.get(URL + "/")
    visible("#login-form")
    shot("01-signed-out.png")
    check(driver.title == "shippy", "the UI loads from the gateway", driver.title)

    email = f"browser-{int(time.time() * 1000)}@example.com"
    fill("#signup-form", name="Brenda Browser", company="Shippy", email=email, password=PASSWORD)
    find(By.CSS_SELECTOR, "#signup-form button[type=submit]").click()
    visible("#signed-in")
    check(email in find(By.ID, "whoami").text, "signing up logs you in", find(By.ID, "whoami").text)
    check(not find(By.ID, "login-form").is_displayed(), "signed in, the login form is gone")
    shot("02-signed-up.png")

    find(By.ID, "logout").click()
    visible("#login-form")
    check(not find(By.ID, "signed-in").is_displayed(), "log out hides your data")

    # Log in with the keyboard alone: type, then Enter submits.
    fill("#login-form", email=email)
    find(By.CSS_SELECTOR, "#login-form [name=password]").send_keys(PASSWORD, Keys.ENTER)
    visible("#signed-in")
    check(email in find(By.ID, "whoami").text, "logging in (keyboard only) shows who you are")

    # Ship a consignment with two containers (a third is added and removed).
    fill("#ship-form", description="Browser cargo", weight="500")
    rows = lambda: driver.find_elements(By.CSS_SELECTOR, "#containers li")  # noqa: E731
    find(By.ID, "add-container").click()
    find(By.ID, "add-container").click()
    check(len(rows()) == 3, "containers are added in the form", len(rows()))
    rows()[2].find_element(By.CSS_SELECTOR, ".remove").click()
    check(len(rows()) == 2, "a container is removed from the form", len(rows()))
    for row, (customer, origin) in zip(rows(), [("cust-1", "Rotterdam"), ("cust-2", "Hamburg")]):
        row.find_element(By.NAME, "customer_id").send_keys(customer)
        row.find_element(By.NAME, "origin").send_keys(origin)
    check(not find(By.ID, "notice").is_displayed(), "logging in clears the last notice",
          find(By.ID, "notice").text)
    find(By.CSS_SELECTOR, "#ship-form button[type=submit]").click()
    notice = visible("#notice")
    check("Shipped" in notice.text, "shipping says so", notice.text)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#consignments tbody tr"))
    first = [td.text for td in find(By.CSS_SELECTOR, "#consignments tbody tr").find_elements(By.TAG_NAME, "td")]
    check(first[1] == "Browser cargo", "the consignment is listed", first)
    check(first[3] == "Rotterdam, Hamburg", "with its two containers", first)
    check("vessel" in first[4] and "(" in first[4], "with its vessel, by name and id", first)
    shot("03-shipped.png")

    # A bad input: the API's message, shown to the person.
    fill("#ship-form", description="Negative cargo", weight="-5")
    find(By.CSS_SELECTOR, "#ship-form button[type=submit]").click()
    message = visible("#message")
    check("Please check the form" in message.text and "weight" in message.text,
          "a bad weight shows the API's error", message.text)
    check(driver.switch_to.active_element == message, "the error takes the focus (screen readers announce it)")
    shot("04-error.png")
    rows_now = driver.find_elements(By.CSS_SELECTOR, "#consignments tbody tr")
    check(len(rows_now) == 1, "nothing was shipped by the bad input", len(rows_now))
    check(not find(By.ID, "fleet").is_displayed(), "a user does not see the admin's fleet section")
    check(not find(By.ID, "ops-link").is_displayed(), "a user has no link to the ops dashboard")
    driver.execute_script("location.hash = '#ops'")
    time.sleep(0.5)
    check(not find(By.ID, "ops").is_displayed() and find(By.ID, "signed-in").is_displayed(),
          "a user who types #ops still sees the shipping page")
    driver.execute_script("location.hash = ''")

    # Cancel it: gone from the list, its room free again.
    find(By.CSS_SELECTOR, "#consignments tbody tr button.cancel").click()
    cancelled = until(wait, lambda d: "Cancelled" in d.find_element(By.ID, "notice").text, False)
    check(cancelled and "room goes back" in find(By.ID, "notice").text, "cancelling says its room goes back",
          find(By.ID, "notice").text)
    check(not driver.find_elements(By.CSS_SELECTOR, "#consignments tbody tr")
          and find(By.ID, "no-consignments").is_displayed(), "the cancelled consignment leaves the list")
    shot("05-cancelled.png")

    find(By.ID, "logout").click()
    visible("#login-form")
    shot("06-logged-out.png")
    check("logged out" in find(By.ID, "notice").text, "log out says so", find(By.ID, "notice").text)

    if ADMIN:
        fill("#signup-form", name="Ada Admin", company="Shippy", email=ADMIN, password=PASSWORD)
        find(By.CSS_SELECTOR, "#signup-form button[type=submit]").click()
        visible("#fleet")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#vessels tbody tr")) >= 3)
        fill("#vessel-form", name="Browser Barge", capacity="4", max_weight="4000")
        find(By.CSS_SELECTOR, "#vessel-form button[type=submit]").click()
        added = until(wait, lambda d: "Browser Barge" in d.find_element(By.ID, "vessels").text, False)
        check(added, "an admin sees the fleet and adds a vessel", find(By.ID, "vessels").text)
        fleet = find(By.ID, "vessels").text
        check("4 containers, 4000 kg" in fleet and "200 containers, 100000 kg" in fleet,
              "the fleet shows each vessel's room left (the cancelled room is back)", fleet)
        shot("07-admin-fleet.png")
        ops_dashboard(driver, wait, shot)


def get_status(path, token):
    """GET path with token: the HTTP status."""
    request = urllib.request.Request(URL + path, headers={"authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def upstream_states(driver):
    """{name: (health, circuit)} as the dashboard shows them (read in one
    script: the page replaces its rows at every refresh)."""
    states = driver.execute_script("""
        const states = {};
        for (const row of document.querySelectorAll("#ops-upstreams tbody tr")) {
          states[row.dataset.upstream] = [row.querySelector("td.health").dataset.state,
                                          row.querySelector("td.circuit").dataset.state];
        }
        return states;""")
    return {name: tuple(state) for name, state in states.items()}


def route_row(driver, route):
    """(text, class) of the dashboard's row for `route`, e.g. "GET /api/v1/vessels"; None without one."""
    row = driver.execute_script("""
        const row = [...document.querySelectorAll("#ops-routes tbody tr")]
          .find((r) => r.dataset.route === arguments[0]);
        return row ? [row.innerText, row.className] : null;""", route)
    return tuple(row) if row else None


def wait_for_states(driver, wanted, seconds):
    """Waits until every upstream in `wanted` shows its (health, circuit); whether it did."""
    return until(WebDriverWait(driver, seconds, poll_frequency=0.2),
                 lambda d: all(upstream_states(d).get(name) == state for name, state in wanted.items()), False)


def ops_dashboard(driver, wait, shot):
    """The admin's ops dashboard: all healthy; consignment-service stopped,
    its circuit shown open without a reload; resumed, shown closed again."""
    find = driver.find_element
    find(By.ID, "ops-link").click()
    wait.until(when.visibility_of_element_located((By.ID, "ops")))
    check(not find(By.ID, "signed-in").is_displayed(), "the ops dashboard is a page of its own")
    check(driver.switch_to.active_element == find(By.ID, "ops-title"), "opening it moves the focus to its heading")
    healthy = {name: ("healthy", "closed") for name in UPSTREAMS}
    check(wait_for_states(driver, healthy, 15), "the dashboard shows all three upstreams healthy, circuits closed",
          upstream_states(driver))
    row = until(wait, lambda d: route_row(d, "GET /api/v1/vessels"), ("",))[0]
    check("req/s" in row and " %" in row and " ms" in row,
          "each route shows its rate, error shares and p99 with units", row)
    check("All upstream services healthy" in find(By.ID, "ops-summary").text, "the summary says all is well",
          find(By.ID, "ops-summary").text)
    if CONSIGNMENT_PID is None:
        return
    # A mark that a reload would wipe: the page must update itself.
    driver.execute_script("window.shippyNoReload = true")
    token = driver.execute_script("return sessionStorage.getItem('shippy.token')")
    os.kill(CONSIGNMENT_PID, signal.SIGSTOP)
    try:
        # Two calls wait out the 2 s deadline (504), then the circuit is open (503 at once).
        statuses = [get_status("/api/v1/consignments", token) for _ in range(3)]
        check(statuses == [504, 504, 503], "stopped consignment-service: 504 twice, then 503 (circuit open)",
              statuses)
        opened = wait_for_states(driver, {"consignment-service": ("unhealthy", "open")}, 15)
        check(opened, "the dashboard shows consignment-service unhealthy with its circuit open",
              upstream_states(driver))
        others = {name: ("healthy", "closed") for name in ("user-service", "vessel-service")}
        check(wait_for_states(driver, others, 5), "and the other upstreams still healthy and closed",
              upstream_states(driver))
        summary = find(By.ID, "ops-summary").text
        check("consignment-service" in summary and re.search(r"(?<!half-)\bopen\b", summary), "the summary names the open circuit", summary)
        check(driver.execute_script("return window.shippyNoReload === true"), "without a reload")
        failing = route_row(driver, "GET /api/v1/consignments") or ("", "")
        check(failing[1] == "failing", "the failing route (5xx answers) is marked", failing)
        driver.set_window_size(1200, 1300)  # the whole dashboard (docs/ops-dashboard.png)
        shot("08-ops-breaker-open.png")
    finally:
        os.kill(CONSIGNMENT_PID, signal.SIGCONT)
    # After the cool-down (8 s) one call probes and closes the circuit.
    deadline = time.monotonic() + 45
    status = None
    while time.monotonic() < deadline:
        status = get_status("/api/v1/consignments", token)
        if status == 200:
            break
        time.sleep(0.5)
    check(status == 200, "resumed consignment-service answers again", status)
    check(wait_for_states(driver, healthy, 15), "the dashboard shows its circuit closed again, healthy",
          upstream_states(driver))
    check(driver.execute_script("return window.shippyNoReload === true"), "still without a reload")
    shot("09-ops-recovered.png")


if __name__ == "__main__":
    sys.exit(main())

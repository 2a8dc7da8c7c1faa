"""ScryDB's web UI in a real browser: Debian's Chromium, driven by Playwright.

Usage: ui_browser.py BASE_URL TRACE_ID   (run by tests/it/ui.rs)

Loads every route, clicks from a search result and from a log to their trace, toggles the
critical path (with the script, and without it through the link), and checks what is
drawn. Any script error on a page fails the run. With SCRY_UI_SCREENSHOTS=DIR, saves a
screenshot of each screen there (docs/ui.md shows them).
"""

import os
import sys

from playwright.sync_api import sync_playwright

BASE, TRACE = sys.argv[1], sys.argv[2]
SHOTS = os.environ.get("SCRY_UI_SCREENSHOTS")
CHROMIUM = os.environ.get("SCRY_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium tries to reach Google's hosts, which
# this machine's closed network refuses.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

errors = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what)


def shot(page, name):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, name + ".png"), full_page=False)


def watch(page):
    page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
    page.on(
        "console",
        lambda m: errors.append(f"{page.url}: console {m.type}: {m.text}")
        if m.type == "error"
        else None,
    )


def main():
    # Playwright gives each launch a fresh, empty profile directory of its own.
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        page = ctx.new_page()
        watch(page)

        # Search → trace.
        page.goto(f"{BASE}/traces?status=error&range=all")
        rows = page.locator("#trace-results tbody tr")
        check(rows.count() > 0, f"/traces lists {rows.count()} failed spans")
        check(page.locator("figure.scatter circle.pt").count() == rows.count(),
              "the scatter draws a point per result")
        check(page.locator("figure.scatter svg").bounding_box()["width"] > 500,
              "the scatter is drawn wide")
        shot(page, "traces")
        first = rows.first.locator("a.trace-link")
        target = first.get_attribute("href").split("?")[0]
        first.click()
        page.wait_for_url(f"**{target}*")
        check("/trace/" in page.url, f"a result opens its trace ({page.url})")
        bars = page.locator("#waterfall .wf-row")
        check(bars.count() > 0, f"the waterfall draws {bars.count()} spans")
        box = page.locator("#waterfall .wf-bar").first.bounding_box()
        check(box is not None and box["width"] > 0, "the root bar has a width")
        check(page.locator("#detail").is_visible(), "the span detail is shown")
        check(page.locator(".wf-row.sel").count() == 1, "the clicked span is selected")

        # The critical path of the demo trace, toggled with the script.
        page.goto(f"{BASE}/trace/{TRACE}")
        fall = page.locator("#waterfall")
        check("cp-on" not in fall.get_attribute("class"), "critical path off at first")
        check(not page.locator(".wf-cpseg").first.is_visible(), "no path stretches drawn")
        page.click("#cp-toggle")
        check("cp-on" in fall.get_attribute("class"), "the toggle turns it on")
        check(page.locator(".wf-cpseg").first.is_visible(), "path stretches are drawn")
        check(page.locator("#cp-summary").is_visible(), "the path's summary is shown")
        check("cp=1" in page.url, "the URL keeps the view")
        on_path = page.locator(".wf-row.cp").count()
        check(on_path > 0, f"{on_path} spans are on the critical path")
        check(page.locator("#cp-toggle .state").inner_text() == "on", "the toggle says on")
        shot(page, "trace")
        page.reload()
        check("cp-on" in page.locator("#waterfall").get_attribute("class"),
              "a reload (or a shared link) shows the same view")
        page.click("#cp-toggle")
        check("cp-on" not in fall.get_attribute("class"), "and off again")
        check("cp=1" not in page.url, "the URL follows")

        # Log → trace.
        page.goto(f"{BASE}/logs?severity=error&range=all")
        links = page.locator("#log-results a.trace-link")
        check(links.count() > 0, f"/logs lists {links.count()} error logs with a trace")
        check(page.locator(".pattern").count() > 0, "the window's log patterns are listed")
        shot(page, "logs")
        links.first.click()
        page.wait_for_url("**/trace/**")
        check(page.locator("#waterfall .wf-row").count() > 0, "a log opens its trace")
        check(page.locator(".wf-row.sel").count() == 1, "at the log's span")

        # Metrics: a histogram's quantiles and its exemplars, which open their trace.
        page.goto(f"{BASE}/metrics?name=rpc.server.duration&service=frontend&range=all")
        check(page.locator("figure.linechart polyline").count() == 3, "p50/p90/p99 lines")
        ex = page.locator("figure.linechart a.exemplar")
        check(ex.count() > 0, f"{ex.count()} exemplar points")
        shot(page, "metrics")
        page.locator("#exemplars a.trace-link").first.click()
        page.wait_for_url("**/trace/**")
        check(page.locator("#waterfall .wf-row").count() > 0, "an exemplar opens its trace")

        # Services: the map and the RED table.
        page.goto(f"{BASE}/services?range=all")
        check(page.locator("svg.service-map g.node").count() == 12, "twelve services drawn")
        check(page.locator("svg.service-map g.edge").count() >= 11, "the calls between them")
        check(page.locator("#red tbody tr").count() > 0, "the RED table")
        shot(page, "services")

        # SQL console.
        page.goto(f"{BASE}/sql")
        page.fill("#sql-input", "SELECT service_name, count(*) AS spans FROM spans GROUP BY 1 ORDER BY 2 DESC")
        page.click("form.sqlform button")
        page.wait_for_selector("#sql-result")
        check(page.locator("#sql-result tbody tr").count() == 12, "the console's result")
        check(page.locator("#csv-link").is_visible(), "a CSV download")
        shot(page, "sql")

        # Without JavaScript: the toggle is a link, and reading works.
        plain = browser.new_context(java_script_enabled=False, viewport={"width": 1400, "height": 900})
        page2 = plain.new_page()
        page2.goto(f"{BASE}/trace/{TRACE}")
        page2.click("#cp-toggle")
        page2.wait_for_url("**cp=1*")
        check("cp-on" in page2.locator("#waterfall").get_attribute("class"),
              "without script, the toggle's link shows the critical path")
        page2.goto(f"{BASE}/traces?status=error&range=all")
        check(page2.locator("#trace-results tbody tr").count() > 0, "search works without script")

        check(not errors, "no script errors: " + "; ".join(errors))
        browser.close()
    print("all browser checks passed")


if __name__ == "__main__":
    main()

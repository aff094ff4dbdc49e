"""The page of `serve` in a real browser: headless Chromium driven by Playwright, one test per tab.

Needs the optional extra (`pip install -e '.[browser]'`) and a system Chromium (Debian:
`apt-get install -y chromium`); without them these tests are skipped. MINILAB_CHROMIUM overrides
the browser's path. With MINILAB_SCREENSHOTS=DIR each tab's screenshot is also saved into DIR.
"""

import os
import shutil
import threading
from pathlib import Path

import pytest

from minilab.cli import main
from minilab.serve import Lab, make_server
from tests.conftest import EXAMPLE

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("MINILAB_CHROMIUM", "/usr/bin/chromium")
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


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """A server over a lab where the tiny preset has trained for one epoch."""
    d = tmp_path_factory.mktemp("browser_lab")
    shutil.copy(EXAMPLE, d / "notes.txt")
    cwd = os.getcwd()
    os.chdir(d)
    try:
        assert main(["train", "--data", "notes.txt", "--preset", "tiny", "--epochs", "1", "--device", "cpu"]) == 0
    finally:
        os.chdir(cwd)
    server = make_server(Lab(d / "experiments", d / "checkpoints"), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[browser]')"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set MINILAB_CHROMIUM)")
    profile = tmp_path_factory.mktemp("chromium_profile")  # a fresh profile: no cache, no extensions
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=ARGS, headless=True, viewport={"width": 1280, "height": 860}
        )
        yield context
        context.close()


@pytest.fixture
def page(browser_context, url):
    """A fresh tab on the lab's page; any JavaScript error fails the test."""
    page = browser_context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "400" not in m.text else None)
    page.goto(url)
    yield page
    page.close()
    assert not errors, errors


def screenshot(page, tmp_path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=True)
    if os.environ.get("MINILAB_SCREENSHOTS"):
        out = Path(os.environ["MINILAB_SCREENSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, out / name)


def test_runs_tab_lists_the_run_and_draws_its_curves(page, tmp_path):
    page.wait_for_selector("#run-list input:checked")
    assert "notes" in page.inner_text("#run-list")
    page.wait_for_selector("#run-details table")
    assert "best val loss" in page.inner_text("#run-details")
    # the chart has been drawn: some pixels of the step chart are not white
    page.wait_for_function(
        """() => { const c = document.querySelector('#chart-step');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let coloured = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 2] > d[i] + 60) coloured++;
                   return coloured > 50; }"""
    )
    screenshot(page, tmp_path, "runs.png")


def test_generate_tab_streams_text_and_reports_errors(page, tmp_path):
    page.click("button[data-tab=generate]")
    page.wait_for_selector("#gen-form select option", state="attached")
    page.fill("#gen-form input[name=temperature]", "-1")
    page.click("#gen-go")
    page.wait_for_function("document.querySelector('#gen-error').textContent.includes('temperature must be')")
    page.fill("#gen-form input[name=temperature]", "0.8")
    page.fill("#gen-prompt", "The ")
    page.fill("#gen-max", "60")
    page.fill("#gen-form input[name=seed]", "1")
    page.click("#gen-go")
    page.wait_for_function("document.querySelector('#gen-status').textContent.includes('tokens/s')")
    assert page.inner_text("#gen-error") == ""
    assert len(page.text_content(".continuation")) == 60  # a character model: one character per token
    assert "Limits:" in page.inner_text("#limits")
    screenshot(page, tmp_path, "generate.png")


def test_attention_tab_draws_every_head_and_follows_the_selected_token(page, tmp_path):
    page.click("button[data-tab=attention]")
    page.wait_for_selector("#att-form select option", state="attached")
    page.fill("#att-prompt", "The model learns")
    page.click("#att-form button")
    page.wait_for_selector("#att-grid canvas")
    assert page.locator("#att-grid canvas").count() == 2 * 4  # the tiny preset: 2 layers x 4 heads
    assert page.locator("#att-tokens span").count() == len("The model learns")
    page.hover("#att-tokens span:nth-child(5)")  # the 'm' of 'model'
    assert page.locator("#att-tokens span.selected").inner_text() == "m"
    first = page.locator(".att-cell .top").first
    assert first.inner_text().startswith("m →")
    assert first.locator(".row-tokens span").count() == 5  # 'The m': what 'm' may attend to
    screenshot(page, tmp_path, "attention.png")


def test_model_tab_shows_parameters_by_component(page, tmp_path):
    page.click("button[data-tab=model]")
    page.wait_for_selector("#model-info table")
    text = page.inner_text("#model-info")
    assert "parameters by component" in text and "attention (q, k, v and output projections)" in text
    assert "d_model" in text
    screenshot(page, tmp_path, "model.png")

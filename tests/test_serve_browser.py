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

from minilab.app.cli import main
from minilab.app.serve import Lab, make_server
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
def lab_dir(tmp_path_factory):
    """A server over a lab where the tiny preset has trained for one epoch, at two learning rates."""
    d = tmp_path_factory.mktemp("browser_lab")
    shutil.copy(EXAMPLE, d / "notes.txt")
    cwd = os.getcwd()
    os.chdir(d)
    try:
        for name, lr in (("tiny-lr3e-3", "3e-3"), ("tiny-lr1e-2", "1e-2")):
            args = [
                "--preset",
                "tiny",
                "--epochs",
                "1",
                "--lr",
                lr,
                "--run_name",
                name,
                "--out_dir",
                f"checkpoints/{name}",
            ]
            assert main(["train", "--data", "notes.txt", *args, "--device", "cpu"]) == 0
    finally:
        os.chdir(cwd)
    return d


@pytest.fixture(scope="module")
def url(lab_dir):
    d = lab_dir
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
    """The visible part of the page as tmp_path/name, and a small 64-colour copy in $MINILAB_SCREENSHOTS."""
    page.screenshot(path=str(tmp_path / name))
    if os.environ.get("MINILAB_SCREENSHOTS"):
        from PIL import Image  # comes with matplotlib

        out = Path(os.environ["MINILAB_SCREENSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        with Image.open(tmp_path / name) as image:  # a flat page needs few colours: a PNG of tens of kB
            image.convert("RGB").quantize(64).save(out / name, optimize=True)


# How many pixels of the step chart are mostly blue (the first run's colour) or mostly orange (the second's).
COLOURED = """(which) => { const c = document.querySelector('#chart-step');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4)
        if (which === 'blue' ? d[i + 2] > d[i] + 60 : d[i] > d[i + 2] + 60) n++;
    return n; }"""


def test_runs_tab_lists_runs_and_overlays_the_ticked_ones(page, tmp_path):
    page.wait_for_selector("#run-list input:checked")
    assert page.locator("#run-list li").all_inner_texts() == ["tiny-lr1e-2", "tiny-lr3e-3"]
    assert page.locator("#run-list input:checked").get_attribute("data-run") == "tiny-lr3e-3"  # the newest name
    page.wait_for_selector("#run-details table")
    assert "best val loss" in page.inner_text("#run-details")
    page.wait_for_function(f"({COLOURED})('orange') > 50")  # the ticked run's curves are drawn
    assert page.evaluate(f"({COLOURED})('blue')") < 50  # the unticked run is not (a few anti-aliased pixels)
    page.check("#run-list input[data-run=tiny-lr1e-2]")  # overlay the other run
    page.wait_for_function(f"({COLOURED})('blue') > 50")
    page.click("#run-list a:text('tiny-lr1e-2')")
    page.wait_for_function("document.querySelector('#run-details h2').textContent === 'tiny-lr1e-2'")
    assert "0.01" in page.inner_text("#run-details")  # its lr
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


def test_runs_tab_curves_grow_while_a_run_trains(page, lab_dir):
    """A row appended to metrics.csv reaches the page within one poll (every 2 s), without a reload."""
    metrics = lab_dir / "experiments" / "tiny-lr3e-3" / "metrics.csv"
    before = metrics.read_text()
    page.wait_for_function("runs.metrics['tiny-lr3e-3'] && runs.metrics['tiny-lr3e-3'].length === 20")
    try:
        with open(metrics, "a") as f:
            f.write("21,2,2.9,,,0.001,1000,0.1,30\n")
        page.wait_for_function("runs.metrics['tiny-lr3e-3'].length === 21", timeout=10_000)
    finally:
        metrics.write_text(before)


def test_inside_tab_lens_ablation_embeddings_and_neurons(page, tmp_path):
    page.click("button[data-tab=inside]")
    page.wait_for_selector("#ins-form select option", state="attached")
    page.wait_for_function("document.querySelector('#ins-limits').textContent.includes('Limits:')")
    page.fill("#ins-prompt", "The model")
    page.click("#ins-lens-go")
    page.wait_for_selector("#ins-out table.heat")
    rows = page.locator("#ins-out table.heat tr")
    assert rows.count() == 1 + 3  # a header, then embed and the tiny preset's 2 layers
    assert page.locator("#ins-out table.heat tr:nth-child(2) td").count() == len("The model") - 1
    page.click("#ins-ablate-go")  # no text yet: a one-line error
    page.wait_for_function("document.querySelector('#ins-error').textContent.includes('paste some text')")
    page.fill("#ins-text", EXAMPLE.read_text()[:3000])
    page.click("#ins-ablate-go")
    page.wait_for_function("document.querySelectorAll('#ins-out table.heat').length === 2")
    assert page.locator("#ins-out table.heat").first.locator("td").count() == 2 * 4  # 2 layers x 4 heads
    assert "loss with nothing removed" in page.inner_text("#ins-out")
    assert page.inner_text("#ins-error") == ""
    page.click("#ins-emb-go")
    page.wait_for_selector("#ins-emb")
    drawn = page.evaluate(
        "() => { const c = document.querySelector('#ins-emb'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0;"
        " return n; }"
    )
    assert drawn > 200  # the token labels were drawn
    assert "nearest neighbours" in page.inner_text("#ins-out")
    page.fill("#ins-layer", "7")
    page.click("#ins-neurons-go")
    page.wait_for_function("document.querySelector('#ins-error').textContent.includes('layers 0..1')")
    page.fill("#ins-layer", "1")
    page.click("#ins-neurons-go")
    page.wait_for_selector("#ins-out .neuron")
    assert page.locator("#ins-out .neuron").count() == 5
    assert page.locator("#ins-out .snippet span.focus").count() == 5 * 4
    screenshot(page, tmp_path, "inside.png")

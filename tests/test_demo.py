"""Tests for `modeling_mtl/demo.py` (the Gradio demo), `modeling_mtl/space.py` (a Space folder from a model) and
the model card as a person sees it. The `browser` tests launch the app on a loopback port and drive a real headless
Chromium with Playwright: what the page shows must be what `predict` answers. Screenshots of each state go to the
test's temporary folder. Without Chromium (Debian: `apt-get install chromium`) or Playwright (`pip install
playwright`) they are skipped, saying so."""

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest

from conftest import BLOCK_PACKAGE, DEMO_DATA, REPO, build_lively_model, free_port, wait_until_ready
from modeling_mtl import MultiTaskModel

gradio = pytest.importorskip("gradio", reason="the demo extra is not installed: pip install -e '.[demo]'")

TEXTS = ["fly from boston to new york", "buy a new laptop", "book a table in paris for two", "hello there"]
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
NO_BROWSER = ("no headless Chromium: install Debian's chromium (apt-get install chromium) and Playwright "
              "(pip install playwright), or set CHROMIUM=/path/to/chromium")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip(NO_BROWSER)
    playwright = pytest.importorskip("playwright.sync_api", reason=NO_BROWSER)
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    """A tiny lively model saved with a rejection threshold between the best scores of TEXTS (so that some are
    rejected and some not) and a test_predictions.jsonl, whose texts become the demo's examples."""
    model = build_lively_model(tokenizer)
    scores = sorted(prediction["score"] for prediction in model.predict(TEXTS))
    model.config.reject_threshold = (scores[0] + scores[-1]) / 2
    folder = tmp_path_factory.mktemp("demo") / "model"
    model.save_pretrained(folder)
    (folder / "test_predictions.jsonl").write_text("".join(json.dumps({"text": text}) + "\n" for text in TEXTS[:2]))
    return folder


@pytest.fixture(scope="module")
def reference(model_dir):
    return MultiTaskModel.from_pretrained(model_dir).eval()


def start_app(command, log, env=None):
    """Start a Gradio app (a command taking GRADIO_SERVER_PORT or --port) and wait until it answers."""
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in command]
    sink = open(log, "w")
    process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                               env={**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_SERVER_PORT": str(port),
                                    "GRADIO_SERVER_NAME": "127.0.0.1", **(env or {})})
    url = f"http://127.0.0.1:{port}/"

    def answers():
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200

    wait_until_ready(process, answers, lambda: log.read_text()[-3000:], "the app", timeout=180)
    return process, url, sink


@pytest.fixture(scope="module")
def demo_url(model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("demo_log") / "demo.log"
    process, url, sink = start_app([sys.executable, "-m", "modeling_mtl", "demo", "--model", str(model_dir),
                                    "--port", "{port}"], log)
    yield url
    process.terminate()
    process.wait(timeout=30)
    sink.close()


def read_one_text(browser, url, text, screenshot):
    """Type `text`, submit, wait for the answer; returns (status line, label shown, [(entity text, tag label)])."""
    page = browser.new_page()
    try:
        page.goto(url)
        page.wait_for_selector("#text textarea")
        page.fill("#text textarea", text)
        page.click("#submit")
        page.wait_for_function(  # the answer, or the message shown instead of one
            "(() => { const status = document.querySelector('#status').innerText.trim();"
            " return status.startsWith('⚠️') || (status.length > 0 &&"
            " document.querySelector('#label [data-testid=label-output-value]') !== null); })()", timeout=60_000)
        page.wait_for_timeout(300)  # the other outputs of the same answer
        status = page.inner_text("#status").strip()
        label = page.locator("#label [data-testid=label-output-value]")
        shown_label = label.inner_text().strip() if label.count() else None
        spans = [(token.locator(".text").inner_text().strip(), token.locator(".label").inner_text().strip())
                 for token in page.locator("#entities .token.highlighted").all()]
        page.screenshot(path=str(screenshot), full_page=True)
        return status, shown_label, spans
    finally:
        page.close()


def expected_spans(prediction):
    return [(entity["word"], f"{entity['entity_group']} ({entity['score']:.2f})") for entity in prediction["entities"]]


@pytest.mark.browser
def test_the_page_shows_predicts_label_and_entities(browser, demo_url, reference, tmp_path):
    accepted = [text for text, p in zip(TEXTS, reference.predict(TEXTS)) if "rejected_label" not in p]
    assert accepted, "the threshold leaves some texts in scope"
    text = accepted[0]
    (expected,) = reference.predict([text], top_k=3)
    status, label, spans = read_one_text(browser, demo_url, text, tmp_path / "one_text.png")
    assert label == expected["label"]
    assert spans == expected_spans(expected) and spans, "the lively model tags words of this text"
    assert status == f"{expected['label']} (score {expected['score']:.2f}), {len(expected['entities'])} entities."


@pytest.mark.browser
def test_a_rejected_text_is_shown_as_out_of_scope(browser, demo_url, reference, tmp_path):
    rejected = [text for text, p in zip(TEXTS, reference.predict(TEXTS)) if "rejected_label" in p]
    assert rejected, "the threshold rejects some texts"
    (expected,) = reference.predict(rejected[:1], top_k=3)
    status, label, spans = read_one_text(browser, demo_url, rejected[0], tmp_path / "rejected.png")
    assert status.startswith("Out of scope: the model rejected this text (out_of_scope)")
    assert f"best guess was {expected['rejected_label']}" in status
    assert label == "out_of_scope" and spans == expected_spans(expected)


@pytest.mark.browser
@pytest.mark.parametrize("text, message", [("   ", "the input is empty"),
                                           ("x" * 2001, "The text is 2001 characters long; this demo reads at most 2000")])
def test_empty_or_oversize_input_gets_a_message_not_a_trace(browser, demo_url, text, message, tmp_path):
    status, label, spans = read_one_text(browser, demo_url, text, tmp_path / "message.png")
    assert message in status and "Traceback" not in status
    assert label is None and spans == []


def test_a_model_that_cannot_predict_gets_a_message_in_both_tabs(tokenizer):
    from modeling_mtl.demo import build_demo

    model = build_lively_model(tokenizer)
    model.tokenizer = None  # predict raises ValueError("this model has no tokenizer: ...")
    handlers = {function.fn.__name__: function.fn for function in build_demo(model).fns.values()}
    one_text = handlers["predict_one"]("fly to boston")
    several = handlers["predict_lines"]("fly to boston\nbuy a laptop")
    assert one_text == (None, None, one_text[2], None) and several == (None, None, several[2])
    for status in (one_text[2], several[2]):
        assert status.startswith("⚠️ this model has no tokenizer"), status


@pytest.mark.browser
def test_the_batch_tab_shows_one_row_per_line_and_offers_the_jsonl(browser, demo_url, reference, tmp_path):
    expected = reference.predict(TEXTS, top_k=3)
    page = browser.new_page()
    try:
        page.goto(demo_url)
        page.get_by_role("tab", name="Several texts").click()
        page.fill("#lines textarea", "\n".join(TEXTS) + "\n\n")
        page.click("#submit_lines")
        page.wait_for_function("document.querySelector('#batch_status').innerText.includes('texts read')",
                               timeout=60_000)
        assert page.inner_text("#batch_status").strip() == f"{len(TEXTS)} texts read."
        rows = page.locator("#table [role=row]").all()  # the data frame is an ARIA grid; its header row has no cells
        cells = [[cell.inner_text().strip() for cell in row.locator("[role=gridcell], td").all()] for row in rows]
        cells = [row for row in cells if row]
        assert [row[0] for row in cells] == TEXTS
        assert [row[1] for row in cells] == [p["label"] for p in expected]
        assert [row[3] for row in cells] == [", ".join(f"{e['word']} ({e['entity_group']})" for e in p["entities"])
                                             for p in expected]
        assert [row[4] for row in cells] == ["yes" if "rejected_label" in p else "" for p in expected]
        link = page.locator("#download [data-testid=download-link]")
        assert link.get_attribute("download").endswith(".jsonl")
        with urllib.request.urlopen(link.get_attribute("href"), timeout=30) as response:
            downloaded = [json.loads(line) for line in response.read().decode().splitlines()]
        assert [(r["text"], r["label"]) for r in downloaded] == [(t, p["label"]) for t, p in zip(TEXTS, expected)]
        page.screenshot(path=str(tmp_path / "batch.png"), full_page=True)
    finally:
        page.close()


@pytest.mark.browser
def test_the_examples_come_from_the_models_evaluation_data(browser, demo_url):
    page = browser.new_page()
    try:
        page.goto(demo_url)
        page.wait_for_selector("#text textarea")
        content = page.content()
        assert all(text in content for text in TEXTS[:2])
    finally:
        page.close()


# ---------------------------------------------------------------------------------------------------- the Space


def test_the_space_folder_holds_the_app_and_its_metadata(model_dir, tmp_path):
    from modeling_mtl.demo import SPACE_CONFIG as READ_BY_APP
    from modeling_mtl.space import SPACE_CONFIG, write_space

    assert READ_BY_APP == SPACE_CONFIG
    folder = write_space(model_dir, tmp_path / "space", repo_id="someone/joint-model")
    assert sorted(path.name for path in folder.iterdir()) == ["README.md", "app.py", "requirements.txt", SPACE_CONFIG]
    readme = (folder / "README.md").read_text()
    header = re.match(r"^---\n(.*?)\n---\n", readme, re.S).group(1)
    import yaml

    metadata = yaml.safe_load(header)
    assert metadata["sdk"] == "gradio" and metadata["sdk_version"] == gradio.__version__
    assert metadata["app_file"] == "app.py" and metadata["models"] == ["someone/joint-model"]
    assert f"gradio=={gradio.__version__}" in (folder / "requirements.txt").read_text()
    config = json.loads((folder / SPACE_CONFIG).read_text())
    assert config["model"] == "someone/joint-model" and config["examples"] == TEXTS[:2]
    imports = set(re.findall(r"^\s*(?:import|from) (\w+)", (folder / "app.py").read_text(), re.M))
    assert imports <= {"json", "os", "tempfile", "gradio", "transformers"}, imports


def test_the_space_command_refuses_a_folder_without_a_model(tmp_path, capsys):
    from modeling_mtl.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["space", "--model", str(tmp_path / "empty"), "--output", str(tmp_path / "space")]) == 2
    assert "has no config.json" in capsys.readouterr().err


@pytest.mark.browser
def test_the_space_app_runs_without_the_package_and_answers_like_predict(browser, model_dir, reference, tmp_path):
    from modeling_mtl.space import write_space

    folder = write_space(model_dir, tmp_path / "space")  # the model copied into the Space
    runner = tmp_path / "run_space.py"
    runner.write_text(BLOCK_PACKAGE + f"\nimport runpy\nrunpy.run_path({str(folder / 'app.py')!r}, run_name='__main__')\n")
    process, url, sink = start_app([sys.executable, "-I", str(runner)], tmp_path / "space.log", env={"PYTHONPATH": ""})
    try:
        accepted = [text for text, p in zip(TEXTS, reference.predict(TEXTS)) if "rejected_label" not in p]
        (expected,) = reference.predict(accepted[:1], top_k=3)
        status, label, spans = read_one_text(browser, url, accepted[0], tmp_path / "space.png")
        assert label == expected["label"] and spans == expected_spans(expected)
    finally:
        process.terminate()
        process.wait(timeout=30)
        sink.close()
    assert "modeling_mtl package is not available" not in (tmp_path / "space.log").read_text()


# ---------------------------------------------------------------------------------------------------- the card


@pytest.mark.browser
def test_the_generated_card_renders_with_every_image_and_table(browser, tiny_encoder_dir, tmp_path):
    from modeling_mtl.model_card import card_html
    from train_mtl import main

    run = tmp_path / "run"
    main([str(REPO / "configuration" / "demo.yaml"), "--encoder", tiny_encoder_dir, "--data_dir", str(DEMO_DATA),
          "--output_dir", str(run), "--num_train_epochs", "1", "--max_train_samples", "24", "--max_eval_samples", "24",
          "--per_device_train_batch_size", "8", "--logging_steps", "1", "--max_seq_length", "64"])
    card = (run / "README.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card)
    assert len(images) == 7 and all((run / image).is_file() for image in images)
    page_file = run / "card.html"
    page_file.write_text(card_html(card), encoding="utf-8")
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    try:
        page.goto(page_file.as_uri())
        page.wait_for_load_state("load")
        loaded = page.evaluate("[...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
        assert sorted(src for src, _ in loaded) == sorted(images)
        assert all(ok for _, ok in loaded), [src for src, ok in loaded if not ok]
        assert page.locator("table").count() >= 5
        text = page.inner_text("body")
        assert not re.search(r"^\s*\|.*\|\s*$", text, re.M), "a table was left as raw pipes"
        assert "library_name:" not in text and "model-index:" not in text, "the YAML header is shown as text"
        assert page.locator("h1").count() >= 1
        page.screenshot(path=str(tmp_path / "card.png"), full_page=True)
    finally:
        page.close()

"""The two screenshots README shows, taken with headless Chromium: the demo on a trained model, and its model card.

    python docs/make_screenshots.py --model "outputs/atis_span_roundtrip/run_jointbert (original)"

Writes docs/demo.png (the demo after reading `--text`) and docs/model_card.png (the Evaluation section of the model's README.md
rendered as the Hub shows it, `modeling_mtl.model_card.card_html`), both palette PNGs. Needs the demo extra, Playwright
and Debian's chromium (as the browser tests do).
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO))


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def small_png(source, target, width, height):
    from PIL import Image

    with Image.open(source) as image:
        image.crop((0, 0, min(width, image.width), min(height, image.height))).convert(
            "P", palette=Image.Palette.ADAPTIVE, colors=128).save(target, optimize=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a trained model folder (with its README.md card)")
    parser.add_argument("--text", default="show me the cheapest flights from boston to denver on monday morning")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM") or shutil.which("chromium"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from modeling_mtl.model_card import card_html

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "modeling_mtl", "demo", "--model", args.model, "--port",
                               str(port)], env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(360):
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.goto(url)
            page.fill("#text textarea", args.text)
            page.click("#submit")
            page.wait_for_selector("#label [data-testid=label-output-value]", timeout=120_000)
            page.wait_for_timeout(1000)
            page.screenshot(path="/tmp/demo_full.png", full_page=True)
            small_png("/tmp/demo_full.png", DOCS / "demo.png", 1100, 760)

            card = Path(args.model) / "README.md"
            rendered = Path(args.model) / ".card_preview.html"  # beside the card, so its plots/ resolve
            rendered.write_text(card_html(card.read_text(encoding="utf-8")), encoding="utf-8")
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(rendered.resolve().as_uri())
            page.wait_for_load_state("load")
            page.evaluate("[...document.querySelectorAll('h2')].find(h => h.innerText.startsWith('Evaluation'))"
                          "?.scrollIntoView()")
            page.screenshot(path="/tmp/card_view.png")
            small_png("/tmp/card_view.png", DOCS / "model_card.png", 1100, 900)
            rendered.unlink()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {DOCS / 'demo.png'} and {DOCS / 'model_card.png'}")


if __name__ == "__main__":
    main()

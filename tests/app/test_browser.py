"""The web app in a real browser: launch.app in a subprocess on 127.0.0.1 with the tiny
models, driven by Playwright through Debian's chromium (never `playwright install`).

Generate from a prompt, wait for the 3D view's canvas to show the mesh (at least 2% of its
pixels differ from the view's clear colour), apply an edit, see a new sample come back,
then stop the server (SIGTERM) and expect a clean exit. Skips when chromium or playwright
is missing (`make install` installs both on Debian).
"""

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the app needs gradio: pip install -e '.[app]'")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'"
)

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip(
        "chromium not found on PATH (Debian: apt-get install -y chromium)", allow_module_level=True
    )

REPO = Path(__file__).resolve().parents[2]
# Software WebGL (SwiftShader through ANGLE) for a headless chromium without a GPU, asked
# for explicitly: chromium 156 still falls back to it by itself, but Chrome is retiring that
# automatic fallback, after which --enable-unsafe-swiftshader is what allows it.
CHROMIUM_ARGS = [
    "--no-sandbox",  # chromium's sandbox refuses to run as root
    "--use-angle=swiftshader",
    "--use-gl=angle",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
]
# The app's renders (small, on the portable renderer) and the test's patience.
APP_FLAGS = ["--backend=xla", "--size=64", "--frames=4", "--mesh_resolution=32"]
START_TIMEOUT_S = 180
RESULT_TIMEOUT_MS = 180_000
MIN_DRAWN_FRACTION = 0.02
# The view's label and buttons float over its canvas: hidden, so that only the canvas counts.
HIDE_VIEW_OVERLAYS = "#view label, #view .icon-button-wrapper { visibility: hidden; }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_config(url: str, server: subprocess.Popen, log: Path) -> dict:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the app exited ({server.returncode}) before serving:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/config", timeout=5) as response:
                return json.load(response)
        except OSError:
            time.sleep(1)
    pytest.fail(f"the app did not serve /config within {START_TIMEOUT_S} s:\n{log.read_text()}")


def drawn_fraction(png: bytes, background=(255, 255, 255), tolerance: int = 8) -> float:
    """The fraction of a screenshot's pixels more than `tolerance` (of 255, any channel)
    away from the background colour."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.int16)
    return float(np.mean(np.abs(rgb - np.asarray(background)).max(axis=-1) > tolerance))


@pytest.fixture
def server(tiny_models, tmp_path):
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    env["GRADIO_TEMP_DIR"] = str(tmp_path / "gradio")  # Gradio's file cache, cleaned with tmp
    log = tmp_path / "app.log"
    command = [sys.executable, "-m", "launch.app", f"--models={tiny_models}", f"--port={port}"]
    command += [f"--out={tmp_path / 'results'}", *APP_FLAGS]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        config = _wait_for_config(url, process, log)
        yield url, config, process, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_generate_view_and_edit_in_chromium(server, tmp_path):
    url, config, process, log = server
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {"prompt", "generate_text", "view", "info", "apply_edit"} <= ids

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.add_style_tag(content=HIDE_VIEW_OVERLAYS)
        page.locator("#prompt textarea, #prompt input").first.fill("a red cube")
        page.locator("#seed input").fill("5")
        page.locator("#generate_text").click()

        info = page.locator("#info textarea")
        page.wait_for_function(
            "() => document.querySelector('#info textarea')?.value.includes('\"seed\": 5')",
            timeout=RESULT_TIMEOUT_MS,
        )
        first = json.loads(info.input_value())
        canvas = page.locator("#view canvas")
        canvas.wait_for(state="visible", timeout=RESULT_TIMEOUT_MS)
        # The viewer loads the GLB after the canvas appears: poll until the mesh is drawn.
        fraction, deadline = 0.0, time.monotonic() + 60
        while fraction < MIN_DRAWN_FRACTION and time.monotonic() < deadline:
            page.wait_for_timeout(1000)
            png = canvas.screenshot()
            fraction = drawn_fraction(png)
        (tmp_path / "view.png").write_bytes(png)
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        print(f"3D view: {fraction:.2%} of the canvas differs from its clear colour")
        assert fraction >= MIN_DRAWN_FRACTION, (
            f"the 3D view drew {fraction:.2%} of its canvas (page errors: {errors})"
        )
        assert first["prompt"] == "a red cube" and "edits" not in first
        assert first["stages"]["1"]["guidance"] > 0  # an empty guidance: the stage's own
        glb = page.locator("#view a[download]").get_attribute("href")

        page.locator("#apply_edit").click()
        page.wait_for_function(
            "() => document.querySelector('#info textarea')?.value.includes('\"edits\"')",
            timeout=RESULT_TIMEOUT_MS,
        )
        edited = json.loads(info.input_value())
        assert edited["edits"][0]["op"] == "translate" and edited["seed"] == 5
        assert edited["edits"][0]["points_inside"] > 0
        assert page.locator("#downloads a").count() == 3
        # The view shows the edited object's GLB.
        page.wait_for_function(
            f"() => document.querySelector('#view a[download]')?.href !== {json.dumps(glb)}"
        )
        page.wait_for_timeout(3000)
        png = canvas.screenshot()
        (tmp_path / "view_edited.png").write_bytes(png)
        fraction = drawn_fraction(png)
        print(f"3D view after the edit: {fraction:.2%} differs")
        assert fraction >= MIN_DRAWN_FRACTION
        browser.close()

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log.read_text()

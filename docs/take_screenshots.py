"""Take the docs' UI screenshots from a running `dagster dev`, with headless Chromium.

    python docs/take_screenshots.py [--url http://127.0.0.1:3000] [--chromium chromium] [NAME ...]

Materialize the numbers assets (a few days of them) and parallelism_sweep first (each page
shows the latest materialization; the sweep's chart is its Markdown metadata, opened with
"Show Markdown"); take backfill.png while a backfill runs. NAME picks shots (default: all).
Drives Chromium over its DevTools protocol (with the `websockets` package that the Dagster
webserver already installs) so it can dismiss the UI's first-visit dialog before each shot.
"""

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import websockets

DOCS = Path(__file__).resolve().parent
# name: (page, width, height, text of a button to click first or None)
SHOTS = {
    "asset_graph.png": ("/locations/data_pipeline/asset-groups/numbers", 1400, 640, None),
    "report_metadata.png": ("/assets/parallelism_report", 1400, 1150, None),
    "sweep_chart.png": ("/assets/parallelism_sweep", 1400, 760, "[Show Markdown]"),
    "partitions.png": ("/assets/cleaned_numbers?view=partitions", 1400, 760, None),
    "backfill.png": ("/overview/backfills", 1400, 520, None),
}
# Click the link or button, then bring the first inline image (the chart) to the top.
CLICK = """
(async () => {
  [...document.querySelectorAll('button, a')].filter(e => e.textContent.trim() === %s)
    .slice(0, 1).forEach(e => e.click());
  await new Promise(done => setTimeout(done, 2000));
  const image = document.querySelector('img[src^="data:image/png"]');
  if (image) image.scrollIntoView({block: 'start'});
})()
"""
DISMISS_DIALOG = """
[...document.querySelectorAll('button')].filter(b => b.textContent.trim() === 'Skip')
  .forEach(b => b.click());
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def visit(
    debugger: str, url: str, width: int, height: int, click: str | None
) -> tuple[str, bytes]:
    """Open ``url`` at ``width`` x ``height`` (dismissing the first-visit dialog, clicking
    ``click`` if given): the page's text as a person sees it, and a PNG of it."""
    counter = itertools.count(1)
    async with websockets.connect(debugger, max_size=None) as browser:

        async def call(method: str, **params) -> dict:
            message_id = next(counter)
            await browser.send(json.dumps({"id": message_id, "method": method, "params": params}))
            while True:
                answer = json.loads(await browser.recv())
                if answer.get("id") == message_id:
                    return answer.get("result", {})

        await call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        await call("Page.navigate", url=url)
        for _ in range(3):  # the dialog can appear a moment after the page
            await asyncio.sleep(4)
            await call("Runtime.evaluate", expression=DISMISS_DIALOG)
        if click is not None:
            await call("Runtime.evaluate", expression=CLICK % json.dumps(click), awaitPromise=True)
        await asyncio.sleep(2)
        text = await call(
            "Runtime.evaluate", expression="document.body.innerText", returnByValue=True
        )
        shot = await call("Page.captureScreenshot", format="png")
        return text["result"].get("value", ""), base64.b64decode(shot["data"])


@contextlib.contextmanager
def headless_chromium(chromium: str) -> Iterator[Callable[..., tuple[str, bytes]]]:
    """A headless Chromium for the block: yields ``visit(url, width, height, click=None)``,
    which returns the page's text and a PNG (see :func:`visit`). The browser is gone after."""
    port = free_port()
    # Chromium's helper processes may still write to the profile as the browser ends.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={port}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as page:
                        targets = json.load(page)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            debugger = next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]

            def open_page(url: str, width: int, height: int, click: str | None = None):
                return asyncio.run(visit(debugger, url, width, height, click))

            yield open_page
        finally:
            browser.terminate()
            try:
                browser.wait(10)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("names", nargs="*", help=f"shots to take: {', '.join(SHOTS)}")
    args = parser.parse_args()
    if unknown := set(args.names) - set(SHOTS):
        parser.error(f"no such shot: {', '.join(sorted(unknown))} (choose from {', '.join(SHOTS)})")
    shots = {name: SHOTS[name] for name in args.names or SHOTS}
    with headless_chromium(args.chromium) as open_page:
        for name, (path, width, height, click) in shots.items():
            _, png = open_page(args.url + path, width, height, click)
            (DOCS / name).write_bytes(png)
            print(f"wrote {DOCS / name}")  # noqa: T201


if __name__ == "__main__":
    main()

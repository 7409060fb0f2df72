#!/usr/bin/env python
"""Screenshot every page of a built book with headless Chromium, offline, and list what looks wrong.

  python scripts/screenshots.py _build/shots              # pages of _build/html, 1280 px wide
  python scripts/screenshots.py _build/shots --tile 1800     # each page cut into 1800 px high PNGs

The browser runs with its network switched off (DevTools ``Network.emulateNetworkConditions``), as for a
reader who opens the book from disk without internet. For each page it writes ``name[-K].png`` and
prints: rendered math (MathJax ``mjx-container`` elements, and ``$``/``\\(`` left as text), requests to
other hosts (they fail offline), and elements that stick out of the page's text column without being
scrollable (cut-off tables, unwrapped lines). Needs ``chromium`` (Debian: ``apt-get install chromium``).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tornado.websocket import websocket_connect

ROOT = Path(__file__).resolve().parents[1]
WAIT_MATH = ("(window.MathJax && MathJax.startup && MathJax.startup.promise) ? "
             "MathJax.startup.promise.then(() => 'ok') : 'no MathJax'")
# elements wider than the article column whose overflow nothing scrolls: what a reader cannot see
CHECK = r"""(() => {
  const main = document.querySelector('article.bd-article') || document.body;
  const right = main.getBoundingClientRect().right + 1;
  const scrolls = el => { for (let e = el; e && e !== main; e = e.parentElement) {
      const s = getComputedStyle(e).overflowX; if ((s === 'auto' || s === 'scroll') && e.scrollWidth > e.clientWidth) return true; }
    return false; };
  const bad = [];
  for (const el of main.querySelectorAll('table, pre, img, .cell_output > div, mjx-container[display="true"]')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > right && !scrolls(el))
      bad.push(`${el.tagName.toLowerCase()} ${Math.round(r.right - right)} px past the column: `
               + (el.innerText || el.getAttribute('src') || '').trim().slice(0, 60).replace(/\s+/g, ' '));
  }
  const text = main.innerText;
  return {math: document.querySelectorAll('mjx-container').length,
          raw_math: (text.match(/\$\$|\\\(|\\\[/g) || []).length, cut: bad};
})()"""


class Browser:
    """One headless Chromium page driven over the DevTools protocol."""

    def __init__(self, ws):
        self.ws, self.ids, self.events = ws, itertools.count(1), []

    async def call(self, method: str, **params):
        msg_id = next(self.ids)
        await self.ws.write_message(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.read_message())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            self.events.append(msg)

    async def wait_event(self, name: str, timeout: float = 30):
        async def wait():
            while not any(e.get("method") == name for e in self.events):
                self.events.append(json.loads(await self.ws.read_message()))
        await asyncio.wait_for(wait(), timeout)


async def shoot(pages: list[Path], out: Path, width: int, tile: int, ws_url: str) -> int:
    ws = await websocket_connect(ws_url, max_message_size=1 << 30)
    target = await Browser(ws).call("Target.createTarget", url="about:blank")
    ws.close()
    ws = await websocket_connect(re.sub(r"/devtools/browser/.*", f"/devtools/page/{target['targetId']}", ws_url),
                                 max_message_size=1 << 30)
    b = Browser(ws)
    for domain in ("Page", "Network", "Runtime"):
        await b.call(f"{domain}.enable")
    await b.call("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1,
                 uploadThroughput=-1)
    problems = 0
    for i, page in enumerate(pages):
        b.events.clear()
        await b.call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=False)
        await b.call("Page.navigate", url=page.as_uri())
        await b.wait_event("Page.loadEventFired")
        math = (await b.call("Runtime.evaluate", expression=WAIT_MATH, awaitPromise=True))["result"].get("value")
        await asyncio.sleep(0.5)
        check = (await b.call("Runtime.evaluate", expression=CHECK, returnByValue=True))["result"]["value"]
        remote = sorted({e["params"]["request"]["url"] for e in b.events if e.get("method") == "Network.requestWillBeSent"
                         and e["params"]["request"]["url"].startswith(("http:", "https:"))})
        height = int((await b.call("Page.getLayoutMetrics"))["cssContentSize"]["height"])
        stem = page.stem
        tops = list(range(0, height, tile)) if tile else [0]
        # one window per image, scrolled as a reader scrolls (sticky sidebars stay in place)
        await b.call("Emulation.setDeviceMetricsOverride", width=width, height=tile or height,
                     deviceScaleFactor=1, mobile=False)
        for k, top in enumerate(tops):
            await b.call("Runtime.evaluate", expression=f"window.scrollTo(0, {top})")
            await asyncio.sleep(0.3)
            shot = await b.call("Page.captureScreenshot", format="png")
            name = f"{stem}-{k + 1}.png" if len(tops) > 1 else f"{stem}.png"
            (out / name).write_bytes(base64.b64decode(shot["data"]))
        print(f"{stem}: {height} px in {len(tops)} image(s); math {math}, {check['math']} formulas rendered, "
              f"{check['raw_math']} left as TeX text; {len(remote)} remote request(s)")
        for line in remote + check["cut"]:
            print(f"  {line}")
        problems += bool(check["cut"]) + bool(check["raw_math"])
    ws.close()
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="folder for the PNGs (created)")
    ap.add_argument("--html", default=str(ROOT / "_build" / "html"), help="the built book (default: _build/html)")
    ap.add_argument("--width", type=int, default=1280, help="window width in CSS px")
    ap.add_argument("--tile", type=int, default=0, help="cut each page into PNGs this high (0: one PNG per page)")
    ap.add_argument("--only", nargs="*", help="page names to take (e.g. 04_gmp_explained); default all")
    a = ap.parse_args(argv)
    html = Path(a.html)
    pages = [html / "book" / "intro.html", *sorted((html / "book" / "executed").glob("*.html"))]
    pages = [p for p in pages if p.exists() and (not a.only or p.stem in a.only)]
    if not pages:
        raise SystemExit(f"error: no book pages under {html} (build the book first: make book)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not chromium:
        raise SystemExit("error: no chromium on PATH (Debian/Ubuntu: apt-get install chromium)")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        log = Path(profile) / "chromium.log"
        with log.open("w") as err:
            proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                     "--disable-background-networking", "--remote-debugging-port=0",
                                     f"--user-data-dir={profile}/user", "about:blank"],
                                    stdout=subprocess.DEVNULL, stderr=err)
        try:
            for _ in range(300):  # up to 30 s for the DevTools address
                m = re.search(r"DevTools listening on (ws://\S+)", log.read_text())
                if m or proc.poll() is not None:
                    break
                time.sleep(0.1)
            if not m:
                raise SystemExit(f"error: chromium did not start its DevTools server:\n{log.read_text()[-2000:]}")
            problems = asyncio.run(shoot(pages, out, a.width, a.tile, m.group(1)))
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"{len(pages)} page(s) -> {out}; {problems} with layout or math problems")
    return 0


if __name__ == "__main__":
    sys.exit(main())

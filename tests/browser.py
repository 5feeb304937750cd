"""Headless Chromium driven through the DevTools protocol over a pipe (no websocket, no extra package).

Every request the page makes is logged (``Network.requestWillBeSent``), and the browser is started with a
host-resolver rule that makes any host but 127.0.0.1 unresolvable, so nothing can leave the machine even
if a page tried. WebGL runs on SwiftShader (no GPU needed).
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import Future
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
LOCAL_SCHEMES = {"data", "blob", "about", "chrome", "devtools"}
FLAGS = [
    "--headless=new", "--no-sandbox", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--remote-debugging-pipe",
]


class Browser:
    """One headless Chromium with one page. ``open(url)``, ``eval(js)``, ``wait_for(js)``, ``screenshot()``."""

    def __init__(self, width: int = 1100, height: int = 800):
        if CHROMIUM is None:
            raise RuntimeError("no chromium on PATH")
        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="humansplat-chromium-")
        # every end above fd 9, so that moving the browser's ends onto 3 and 4 cannot overwrite one of them
        to_browser_r, self._to_browser, self._from_browser, from_browser_w = (_above_9(fd) for fd in (*os.pipe(), *os.pipe()))

        def pipes_as_3_and_4() -> None:  # the protocol pipe: chromium reads fd 3, writes fd 4
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}"],
                                     preexec_fn=pipes_as_3_and_4, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next = 0
        self._pending: dict[int, Future] = {}
        self._lock = threading.Lock()
        self.requests: list[str] = []
        self.console: list[str] = []
        self.session = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                break
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for raw in messages:
                msg = json.loads(raw)
                if "id" in msg:
                    fut = self._pending.pop(msg["id"], None)
                    if fut is not None:
                        fut.set_result(msg)
                elif msg.get("method") == "Network.requestWillBeSent":
                    self.requests.append(msg["params"]["request"]["url"])
                elif msg.get("method") == "Runtime.consoleAPICalled":
                    self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in msg["params"]["args"]))
                elif msg.get("method") == "Runtime.exceptionThrown":
                    self.console.append("exception: " + str(msg["params"]["exceptionDetails"].get("exception", {}).get("description")))

    def send(self, method: str, timeout: float = 60, session: bool = True, **params) -> dict:
        with self._lock:
            self._next += 1
            msg_id = self._next
            fut: Future = Future()
            self._pending[msg_id] = fut
            msg = {"id": msg_id, "method": method, "params": params}
            if session and self.session:
                msg["sessionId"] = self.session
            os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        reply = fut.result(timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", session=False, url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", session=False, targetId=target, flatten=True)["sessionId"]
        for domain in ("Network", "Page", "Runtime", "DOM"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height, deviceScaleFactor=1, mobile=False)
        self.send("Page.navigate", url=url)

    def eval(self, expression: str, timeout: float = 60):
        out = self.send("Runtime.evaluate", timeout=timeout, expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in out:
            raise RuntimeError(f"{expression}: {out['exceptionDetails'].get('exception', {}).get('description', out['exceptionDetails'])}")
        return out["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60, every: float = 0.25):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(every)
        raise TimeoutError(f"timed out after {timeout} s waiting for {expression}")

    def set_file(self, selector: str, path: str) -> None:
        """Put a file into an ``<input type=file>`` (as a user picking it would)."""
        obj = self.send("Runtime.evaluate", expression=f"document.querySelector({json.dumps(selector)})")["result"]
        self.send("DOM.setFileInputFiles", files=[path], objectId=obj["objectId"])

    def screenshot(self) -> Image.Image:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")

    def outside_requests(self) -> list[str]:
        """Every logged request that was not to this machine."""
        return [u for u in self.requests if urlsplit(u).scheme not in LOCAL_SCHEMES and urlsplit(u).hostname not in LOCAL_HOSTS]

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False, timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _above_9(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


def drawn_fraction(image: Image.Image, box: tuple[int, int, int, int], background=(255, 255, 255), tolerance: int = 24) -> float:
    """Fraction of the pixels in ``box`` (left, top, right, bottom) that differ from the background."""
    a = np.asarray(image.crop(box), np.int16)
    return float((np.abs(a - np.array(background)).max(-1) > tolerance).mean())

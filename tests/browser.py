"""Open a page in a real headless browser (Debian's ``chromium``) and report what a reader would
see: every image's natural width, every table's row count, and every console message, JavaScript
exception and browser log entry. Drives the browser over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: requests on fd 3, replies on fd 4, NUL-separated JSON), so it
needs no WebDriver and no Python package beyond the standard library."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser")
PROBE = """JSON.stringify({
  images: [...document.images].map(i => ({alt: i.alt, width: i.naturalWidth})),
  tables: [...document.querySelectorAll('table')].map(t => ({rows: t.rows.length,
                                                             height: t.offsetHeight})),
  sections: Object.fromEntries([...document.querySelectorAll('section')].map(s => [s.id, {
    images: [...s.querySelectorAll('img')].map(i => i.naturalWidth),
    tables: [...s.querySelectorAll('table')].map(t => t.rows.length)}])),
})"""
PROBLEMS = ("Runtime.consoleAPICalled", "Runtime.exceptionThrown", "Log.entryAdded")


def find_browser() -> str | None:
    return next((path for b in BROWSERS if (path := shutil.which(b))), None)


@dataclass
class PageReport:
    """What the page showed: per image its alt text and natural width (0: did not load), per
    table its rows and rendered height, per section (by id) its images' widths and tables'
    rows; and every console message, exception and browser log entry."""

    images: list[dict]
    tables: list[dict]
    sections: dict[str, dict]
    messages: list[str] = field(default_factory=list)
    """Console calls, exceptions and browser log entries, as ``kind: text``."""


class _Pipe:
    def __init__(self, write_fd: int, read_fd: int):
        self.write_fd, self.read_fd = write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        return self.next_id

    def wait(self, done, timeout: float) -> dict | None:
        """The first message ``done`` accepts (others are kept as events); None on timeout."""
        end = time.monotonic() + timeout
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                message = json.loads(raw)
                if done(message):
                    return message
                self.events.append(message)
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                return None
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser closed its DevTools pipe")
            self.buffer += chunk

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        ident = self.send(method, params, session)
        reply = self.wait(lambda m: m.get("id") == ident, 60)
        if reply is None or "error" in reply:
            raise RuntimeError(f"{method}: {reply}")
        return reply["result"]


def open_page(browser: str, page: Path, settle_s: float = 1.0) -> PageReport:
    """Load ``page`` (a file) in headless ``browser`` and probe it."""
    to_browser, from_us = os.pipe()
    to_us, from_browser = os.pipe()
    # the browser expects the pipe on fds 3 and 4; park them high first so dup2 cannot clobber
    parked = (os.dup2(to_browser, 200), os.dup2(from_browser, 201))

    def child_fds() -> None:
        os.dup2(parked[0], 3)
        os.dup2(parked[1], 4)

    with tempfile.TemporaryDirectory(prefix="aicpp-browser-") as profile:
        args = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        proc = subprocess.Popen(
            args,
            preexec_fn=child_fds,
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in (to_browser, from_browser, *parked):
            os.close(fd)
        pipe = _Pipe(from_us, to_us)
        try:
            return _probe(pipe, page, settle_s)
        finally:
            with contextlib.suppress(OSError):
                pipe.send("Browser.close")
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            os.close(from_us)
            os.close(to_us)


def _probe(pipe: _Pipe, page: Path, settle_s: float) -> PageReport:
    target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    attach = {"targetId": target, "flatten": True}
    session = pipe.call("Target.attachToTarget", attach)["sessionId"]
    for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
        pipe.call(domain, session=session)
    pipe.call("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
    loaded = pipe.wait(lambda m: m.get("method") == "Page.loadEventFired", 60)
    if loaded is None:
        raise RuntimeError(f"{page} did not finish loading in 60 s")
    pipe.wait(lambda m: False, settle_s)
    probe = {"expression": PROBE, "returnByValue": True}
    found = json.loads(pipe.call("Runtime.evaluate", probe, session=session)["result"]["value"])
    report = PageReport(found["images"], found["tables"], found["sections"])
    for event in pipe.events:
        if event.get("method") in PROBLEMS:
            report.messages.append(f"{event['method']}: {json.dumps(event['params'])[:300]}")
    return report

"""The web chat (pygemma/web/) in headless Chromium, driven by Selenium, against the real
`pygemma --server` with the default 270M model.

Needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver) and the
`selenium` package; the tests skip when any of them is missing.  Selenium is pointed at the
system browser and driver, so it never downloads anything.

The page is checked against the HTTP API, not against itself: a streamed reply must equal the
API's greedy answer to the same request body (captured from the page's own fetch), a stopped
reply must be a strict prefix of the full answer, an error shown must carry the server's
`error.message`."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CTX = 512          # context of the test servers: small enough that a long message is a 400
KEY = "s3cret-key-for-tests"
WAIT = 120         # seconds: generous for a shared 2-core machine

if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)


# ---- the server -----------------------------------------------------------------------------
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`pygemma -m MODEL --server` on a free loopback port, until stop()."""

    def __init__(self, model, *extra):
        try:
            import pygemma.server  # noqa: F401
        except ImportError as e:
            pytest.skip(f"pygemma.server is not available (Starlette/uvicorn missing?): {e}")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = extra[extra.index("--api-key") + 1] if "--api-key" in extra else None
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pygemma", "-m", model, "--server", "--port", str(self.port),
             "--nobrowser", "-c", str(CTX), *extra],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.log = []
        threading.Thread(target=self._drain, daemon=True).start()  # a full pipe would stall the server
        deadline = time.monotonic() + WAIT
        while True:
            if self.proc.poll() is not None:
                time.sleep(0.2)
                raise RuntimeError("the server exited: " + "".join(self.log)[-2000:])
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not come up")
            time.sleep(0.2)

    def _drain(self):
        for line in self.proc.stderr:
            line = line.decode(errors="replace")
            self.log.append(line)
            # The port was free a moment ago; if it was taken since, the server says where it went.
            m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            if m and len(self.log) < 20:
                self.port = int(m.group(1))
                self.url = f"http://127.0.0.1:{self.port}"

    def request(self, method, path, body=None):
        """(status, parsed JSON body) of one API call, with the key when the server has one."""
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = "Bearer " + self.key
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=WAIT) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def server(model_path):
    s = Server(model_path)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def key_server(model_path):
    s = Server(model_path, "--api-key", KEY)
    yield s
    s.stop()


# ---- the browser ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def driver():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1000,800", "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    try:
        d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    except WebDriverException as e:
        pytest.skip(f"headless chromium does not start here: {e.msg}")
    d.set_script_timeout(WAIT)
    yield d
    d.quit()


# Records every fetch the page makes (url, method, body, Authorization header) in window.sent.
FETCH_SPY = """
window.sent = [];
const realFetch = window.fetch;
window.fetch = (url, opts) => {
  opts = opts || {};
  window.sent.push({url: String(url), method: opts.method || 'GET', body: opts.body || null,
                    auth: (opts.headers || {})['Authorization'] || null});
  return realFetch(url, opts);
};
"""

# Records, at every change of the conversation, the length of the reply's source text (data-raw)
# and of its rendered text (Markdown can shrink as it grows: "**bol" -> "bold").
GROWTH_SPY = """
window.lengths = [];
new MutationObserver(() => {
  const r = document.querySelector('.msg.assistant');
  if (r) window.lengths.push([(r.dataset.raw || '').length, r.querySelector('.body').textContent.length]);
}).observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true,
                                            attributes: true});
"""


def until(fn, timeout=WAIT, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def open_chat(d, url, *, clear_storage=True, temperature="0", max_tokens=None, system=None):
    """Load the page fresh; set the settings; install the fetch spy."""
    d.get(url + "/")
    if clear_storage:
        d.execute_script("localStorage.clear()")
        d.get(url + "/")
    d.execute_script(FETCH_SPY)
    if temperature is not None or max_tokens is not None or system is not None:
        d.find_element(By.ID, "settings-toggle").click()
        for field, value in (("temperature", temperature), ("max-tokens", max_tokens), ("system-prompt", system)):
            if value is not None:
                el = d.find_element(By.ID, field)
                el.clear()
                el.send_keys(str(value))
        d.find_element(By.ID, "settings-toggle").click()


def type_message(d, text):
    box = d.find_element(By.ID, "input")
    box.clear()
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def reply_done(d):
    return until(lambda: d.execute_script(
        "const m = document.querySelectorAll('.msg.assistant'); return m.length && m[m.length-1].dataset.done"),
        what="the reply to finish")


def last_reply(d):
    return d.execute_script("const m = document.querySelectorAll('.msg.assistant'); return m[m.length-1].dataset.raw")


def chat_requests(d):
    return [json.loads(s["body"]) for s in d.execute_script("return window.sent")
            if s["url"].endswith("/v1/chat/completions")]


def greedy_answer(server, body):
    status, out = server.request("POST", "/v1/chat/completions", dict(body, stream=False))
    assert status == 200, out
    return out["choices"][0]["message"]["content"], out["choices"][0]["finish_reason"]


def warm(server, body):
    """Run `body` once through the API before the page sends it.

    A greedy answer can depend on the server's cached prefix (the prompt's last token evaluated
    in a batch or alone gives logits that differ in the last bits, and a near-tie can flip).  After
    this call the page's request and the API's repeat of it meet the same cache state."""
    return greedy_answer(server, body)


def without_model(body):
    return {k: v for k, v in body.items() if k != "model"}


# ---- tests ----------------------------------------------------------------------------------
def test_header_shows_the_served_model(driver, server):
    open_chat(driver, server.url, temperature=None)
    status, models = server.request("GET", "/v1/models")
    assert status == 200
    name = models["data"][0]["id"]
    until(lambda: driver.find_element(By.ID, "model-name").text == name, what="the model name")


def test_streamed_reply_grows_and_equals_the_api_answer(driver, server):
    question = "Name three colours of the rainbow."
    messages = [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": question}]
    warm(server, {"messages": messages, "temperature": 0, "max_tokens": 40})
    open_chat(driver, server.url, temperature="0", max_tokens=40, system="You answer briefly.")
    driver.execute_script(GROWTH_SPY)
    type_message(driver, question)
    until(lambda: driver.find_element(By.ID, "stop").is_displayed(), what="the Stop button")
    assert reply_done(driver) in ("stop", "length")
    raw = last_reply(driver)

    (body,) = chat_requests(driver)
    assert without_model(body) == {"messages": messages, "stream": True, "temperature": 0, "max_tokens": 40}
    expected, _ = greedy_answer(server, body)
    assert expected and raw == expected

    # The reply was painted while it streamed: several distinct, growing lengths before the end.
    seen = driver.execute_script("return window.lengths")
    raw_lengths = [raw for raw, _ in seen if raw > 0]
    shown_lengths = {shown for _, shown in seen if shown > 0}
    assert raw_lengths == sorted(raw_lengths) and raw_lengths[-1] == len(expected), seen
    assert len(set(raw_lengths)) >= 3 and len(shown_lengths) >= 3, seen
    # Shown as rendered Markdown of exactly that text; the conversation holds both turns.
    shown = driver.execute_script("return document.querySelectorAll('.msg.assistant .body')[0].innerHTML")
    assert shown == driver.execute_script("return PgMarkdown.render(arguments[0])", expected)
    assert driver.execute_script("return pgChat.history()") == [
        {"role": "user", "content": question}, {"role": "assistant", "content": expected}]
    assert driver.find_element(By.ID, "send").is_displayed()


def test_second_turn_sends_the_history(driver, server):
    open_chat(driver, server.url, temperature="0", max_tokens=8)
    type_message(driver, "Hello")
    reply_done(driver)
    first = last_reply(driver)
    type_message(driver, "And again")
    reply_done(driver)
    second = chat_requests(driver)[1]
    assert first and second["messages"] == [{"role": "user", "content": "Hello"},
                                            {"role": "assistant", "content": first},
                                            {"role": "user", "content": "And again"}]
    assert driver.execute_script("return pgChat.history()") == second["messages"] + [
        {"role": "assistant", "content": last_reply(driver)}]


def test_stop_keeps_the_partial_reply(driver, server):
    prompt = "Write a Python function that adds two numbers."
    open_chat(driver, server.url, temperature="0", max_tokens=300)
    body = {"messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": 300}
    full, finish = warm(server, body)
    assert finish == "length", "the test needs a prompt whose greedy reply runs to max_tokens"

    type_message(driver, prompt)
    until(lambda: len(driver.execute_script(
        "const b = document.querySelector('.msg.assistant'); return b ? b.dataset.raw : ''")) > 20,
        what="the reply to begin")
    driver.find_element(By.ID, "stop").click()
    assert reply_done(driver) == "stopped"
    partial = last_reply(driver)
    assert 20 < len(partial) < len(full) and full.startswith(partial)
    assert "(stopped)" in driver.find_element(By.CSS_SELECTOR, ".msg.assistant").text
    assert driver.execute_script("return pgChat.history()")[-1] == {"role": "assistant", "content": partial}
    assert driver.find_element(By.ID, "send").is_displayed()
    assert not driver.find_elements(By.CSS_SELECTOR, ".msg.error")

    # The server freed the slot: the next message is answered.
    type_message(driver, "Thanks")
    assert reply_done(driver) in ("stop", "length")


def test_new_chat_clears_the_conversation(driver, server):
    open_chat(driver, server.url, temperature="0", max_tokens=6)
    type_message(driver, "Hi there")
    reply_done(driver)
    assert len(driver.find_elements(By.CSS_SELECTOR, ".msg")) == 2
    driver.find_element(By.ID, "new-chat").click()
    assert driver.find_elements(By.CSS_SELECTOR, ".msg") == []
    assert driver.execute_script("return pgChat.history()") == []
    assert driver.find_element(By.ID, "empty-hint").is_displayed()
    type_message(driver, "Fresh start")
    reply_done(driver)
    assert chat_requests(driver)[-1]["messages"] == [{"role": "user", "content": "Fresh start"}]


def test_server_error_is_shown(driver, server):
    open_chat(driver, server.url, temperature="0", max_tokens=8)
    long_text = "word " * (CTX * 2)
    body = {"messages": [{"role": "user", "content": long_text.strip()}], "temperature": 0, "max_tokens": 8}
    status, err = server.request("POST", "/v1/chat/completions", dict(body, stream=True))
    assert status == 400, err
    message = err["error"]["message"]

    driver.find_element(By.ID, "input").send_keys(long_text.strip())
    driver.find_element(By.ID, "send").click()
    shown = until(lambda: driver.find_elements(By.CSS_SELECTOR, ".msg.error"), what="the error")[0]
    assert message in shown.text and "400" in shown.text
    assert shown.get_attribute("role") == "alert"
    # The failed message left the conversation and came back to the input for editing.
    assert driver.find_elements(By.CSS_SELECTOR, ".msg.user") == []
    assert driver.find_element(By.ID, "input").get_property("value") == long_text.strip()
    assert driver.execute_script("return pgChat.history()") == []


def dialog_open(d):
    return d.find_element(By.ID, "key-dialog").get_property("open")


def test_api_key_is_asked_for_kept_and_sent(driver, key_server):
    driver.get(key_server.url + "/")
    driver.execute_script("localStorage.clear()")
    driver.get(key_server.url + "/")
    until(lambda: dialog_open(driver), what="the key dialog")

    # A wrong key is refused and asked for again.
    driver.find_element(By.ID, "key-input").send_keys("wrong" + Keys.ENTER)
    until(lambda: "rejected" in driver.find_element(By.ID, "key-reason").text, what="the rejection")
    assert dialog_open(driver)
    box = driver.find_element(By.ID, "key-input")
    box.clear()
    box.send_keys(KEY + Keys.ENTER)
    _, models = key_server.request("GET", "/v1/models")
    until(lambda: driver.find_element(By.ID, "model-name").text == models["data"][0]["id"], what="the model name")
    assert not dialog_open(driver)
    assert driver.execute_script("return localStorage.getItem('pygemma.apiKey')") == KEY

    # After a reload the stored key is sent with every request, and chat works.
    warm(key_server, {"messages": [{"role": "user", "content": "Hello"}], "temperature": 0, "max_tokens": 8})
    open_chat(driver, key_server.url, clear_storage=False, temperature="0", max_tokens=8)
    type_message(driver, "Hello")
    reply_done(driver)
    assert not dialog_open(driver)
    sent = driver.execute_script("return window.sent")
    assert sent and all(s["auth"] == "Bearer " + KEY for s in sent)
    assert last_reply(driver) == greedy_answer(key_server, chat_requests(driver)[0])[0]

    # A key that stops working while chatting: the dialog comes back; cancelling shows the 401.
    driver.execute_script("localStorage.setItem('pygemma.apiKey', 'stale')")
    open_chat(driver, key_server.url, clear_storage=False, temperature=None)
    until(lambda: dialog_open(driver), what="the key dialog")
    driver.find_element(By.ID, "key-cancel").click()
    type_message(driver, "Hello")
    until(lambda: dialog_open(driver), what="the key dialog on send")
    driver.find_element(By.ID, "key-cancel").click()
    shown = until(lambda: driver.find_elements(By.CSS_SELECTOR, ".msg.error"), what="the error")[0]
    assert "401" in shown.text


def test_network_error_is_shown(driver, model_path):
    s = Server(model_path)
    try:
        open_chat(driver, s.url, temperature="0", max_tokens=8)
    finally:
        s.stop()
    type_message(driver, "Anyone there?")
    shown = until(lambda: driver.find_elements(By.CSS_SELECTOR, ".msg.error"), what="the error")[0]
    assert "reach the server" in shown.text


def test_stream_parsing_and_safe_display(driver, server):
    """A scripted SSE body (split mid-line, CRLF endings, comments, HTML in the text) through the
    page's own reader: the text is reassembled exactly and shown without any markup from it."""
    open_chat(driver, server.url, temperature=None)
    pieces = ["Hi <img src=x onerror=\"window.pwned=1\">", " **bold** and [x](javascript:window.pwned=2)",
              "\n\n```html\n<script>window.pwned=3</script>\n```\n", "é 漢字 ", "[ok](https://example.com)"]
    events = "".join("data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": p},
                                                          "finish_reason": None}]}) + "\r\n\r\n"
                     for p in pieces)
    events = ": keep-alive\n\n" + events + "data: " + json.dumps(
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}) + "\n\ndata: [DONE]\n\n"
    driver.execute_script("""
      const text = arguments[0];
      window.fetch = async (url, opts) => {
        if (!String(url).endsWith('/v1/chat/completions')) return new Response('{}');
        const bytes = new TextEncoder().encode(text);
        let i = 0;
        const body = new ReadableStream({pull(c) {       // 7-byte chunks: splits lines and characters
          if (i >= bytes.length) { c.close(); return; }
          c.enqueue(bytes.slice(i, i + 7)); i += 7;
        }});
        return new Response(body, {status: 200, headers: {'Content-Type': 'text/event-stream'}});
      };""", events)
    type_message(driver, "show me")
    assert reply_done(driver) == "stop"
    assert last_reply(driver) == "".join(pieces)
    body = driver.find_element(By.CSS_SELECTOR, ".msg.assistant .body")
    assert driver.execute_script("return window.pwned") is None
    assert body.find_elements(By.CSS_SELECTOR, "img, script") == []
    assert [a.get_attribute("href") for a in body.find_elements(By.TAG_NAME, "a")] == ["https://example.com/"]
    assert body.find_element(By.TAG_NAME, "strong").text == "bold"
    assert "<script>window.pwned=3</script>" in body.find_element(By.CSS_SELECTOR, "pre code").text
    assert "é 漢字" in body.text


MARKDOWN_CASES = [
    # (source, CSS selector that must match, its text)
    ("# Title", "h1", "Title"),
    ("### Small", "h3", "Small"),
    ("some **bold** text", "strong", "bold"),
    ("some *italic* text", "em", "italic"),
    ("some _italic_ text", "em", "italic"),
    ("a `x < y` span", "code", "x < y"),
    ("```python\nif a < b:\n    pass\n```", "pre code.language-python", "if a < b:\n    pass"),
    ("- one\n- two", "ul > li:nth-child(2)", "two"),
    ("1. one\n2. two", "ol > li:nth-child(2)", "two"),
    ("- a\n  - nested", "ul > li > ul > li", "nested"),
    ("[site](https://example.com/a?b=1&c=2)", "a[href='https://example.com/a?b=1&c=2']", "site"),
    ("mail [me](mailto:a@b.c)", "a[href='mailto:a@b.c']", "me"),
    ("> quoted", "blockquote", "quoted"),
    ("see https://example.com/x.", "a[href='https://example.com/x']", "https://example.com/x"),
]

HOSTILE = [
    "<img src=x onerror=window.pwned=1>",
    "<script>window.pwned=1</script>",
    "[x](javascript:window.pwned=1)",
    "[x](JaVaScRiPt:window.pwned=1)",
    "[x](data:text/html,<script>window.pwned=1</script>)",
    "[x](https://a.b\" onmouseover=\"window.pwned=1)",
    "[x](https://a.b\"onmouseover=\"window.pwned=1\")",
    "`<b onclick=window.pwned=1>`",
    "**<svg onload=window.pwned=1>**",
    "```\n</code></pre><img src=x onerror=window.pwned=1>\n```",
    "<a href=\"javascript:window.pwned=1\">x</a>",
    "&lt;img src=x onerror=window.pwned=1&gt;",
]


def test_markdown_renderer(driver, server):
    driver.get(server.url + "/")
    render = """
      const div = document.createElement('div');
      div.innerHTML = PgMarkdown.render(arguments[0]);
      document.body.append(div);
      const el = div.querySelector(arguments[1]);
      const out = el ? el.textContent : null;
      div.remove();
      return out;"""
    for source, selector, text in MARKDOWN_CASES:
        assert driver.execute_script(render, source, selector) == text, source
    # Hostile input: no element but the renderer's own, no event handlers, no unsafe link.
    audit = """
      const div = document.createElement('div');
      div.innerHTML = PgMarkdown.render(arguments[0]);
      document.body.append(div);
      const bad = [];
      const allowed = new Set(['P','BR','STRONG','EM','DEL','CODE','PRE','A','H1','H2','H3','H4','H5','H6',
                               'UL','OL','LI','BLOCKQUOTE','HR']);
      for (const el of div.querySelectorAll('*')) {
        if (!allowed.has(el.tagName)) bad.push(el.tagName);
        for (const a of el.attributes) {
          if (!['href','target','rel','class','start'].includes(a.name)) bad.push(el.tagName + '@' + a.name);
          if (a.name === 'href' && !/^(https?:|mailto:)/i.test(a.value)) bad.push('href ' + a.value);
        }
      }
      const text = div.textContent + [...div.querySelectorAll('a')].map(a => a.href).join(' ');
      div.remove();
      return [bad, text];"""
    for source in HOSTILE:
        bad, text = driver.execute_script(audit, source)
        assert bad == [], (source, bad)
        assert "pwned" in text, source     # shown as text (or kept in a safe URL), not dropped
    assert driver.execute_script("return window.pwned") is None


def test_keyboard_labels_and_phone_width(driver, server):
    open_chat(driver, server.url, temperature=None)
    # Shift+Enter adds a line; it does not send.
    box = driver.find_element(By.ID, "input")
    box.send_keys("line one" + Keys.SHIFT + Keys.ENTER + Keys.NULL + "line two")
    assert box.get_property("value") == "line one\nline two"
    assert driver.find_elements(By.CSS_SELECTOR, ".msg") == []
    # Every form control has a label; every button has a name.
    unlabeled = driver.execute_script("""
      return [...document.querySelectorAll('input, textarea')].filter(e => !e.labels.length).map(e => e.id)
        .concat([...document.querySelectorAll('button')].filter(b => !b.textContent.trim()).map(b => b.id));""")
    assert unlabeled == []
    assert driver.find_element(By.ID, "log").get_attribute("role") == "log"
    # The settings panel opens and closes with its button.
    toggle, panel = driver.find_element(By.ID, "settings-toggle"), driver.find_element(By.ID, "settings")
    assert not panel.is_displayed() and toggle.get_attribute("aria-expanded") == "false"
    toggle.click()
    assert panel.is_displayed() and toggle.get_attribute("aria-expanded") == "true"
    toggle.click()
    assert not panel.is_displayed()
    assert not driver.find_element(By.ID, "stop").is_displayed()
    # A 360 px wide phone: nothing wider than the screen; input and Send on screen.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 360, "height": 740, "deviceScaleFactor": 2, "mobile": True})
    try:
        driver.get(server.url + "/")
        driver.find_element(By.ID, "settings-toggle").click()
        width = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], width
        for el_id in ("input", "send", "new-chat", "temperature", "max-tokens"):
            rect = driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                         "return [r.left, r.right, r.top, r.bottom, innerWidth, innerHeight]",
                                         driver.find_element(By.ID, el_id))
            assert 0 <= rect[0] and rect[1] <= rect[4] and 0 <= rect[2] and rect[3] <= rect[5], (el_id, rect)
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

// The pygemma web chat: talks to the server's OpenAI-compatible API.
//
//   GET  /v1/models            the model name for the header (and the "model" field)
//   POST /v1/chat/completions  stream: true; the reply arrives as server-sent events
//
// State: `history` holds the messages sent with the next request (the system
// prompt is added at send time).  Only text goes into the page through
// textContent, except replies, which go through PgMarkdown.render (escapes first).
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const log = $("log"), input = $("input"), form = $("composer");
  const sendButton = $("send"), stopButton = $("stop");
  const settings = {
    system: $("system-prompt"), temperature: $("temperature"), maxTokens: $("max-tokens"),
  };
  const KEY_STORE = "pygemma.apiKey";
  const SETTINGS_STORE = "pygemma.settings";

  let history = [];      // [{role, content}] of this conversation
  let modelName = null;  // from /v1/models
  let busy = null;       // {controller, bubble} while a reply streams

  // ---- storage (localStorage may be unavailable: private mode, file://) --------
  function load(name) {
    try { return window.localStorage.getItem(name); } catch (e) { return null; }
  }
  function save(name, value) {
    try {
      if (value === null) window.localStorage.removeItem(name);
      else window.localStorage.setItem(name, value);
    } catch (e) { /* not persisted: the value still lives for this page */ }
  }
  let apiKey = load(KEY_STORE);

  function restoreSettings() {
    let saved = null;
    try { saved = JSON.parse(load(SETTINGS_STORE) || "null"); } catch (e) { saved = null; }
    if (!saved || typeof saved !== "object") return;
    if (typeof saved.system === "string") settings.system.value = saved.system;
    if (typeof saved.temperature === "string") settings.temperature.value = saved.temperature;
    if (typeof saved.maxTokens === "string") settings.maxTokens.value = saved.maxTokens;
  }
  function saveSettings() {
    save(SETTINGS_STORE, JSON.stringify({
      system: settings.system.value, temperature: settings.temperature.value,
      maxTokens: settings.maxTokens.value,
    }));
  }

  // ---- HTTP -------------------------------------------------------------------
  class HttpError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  function headers(json) {
    const h = {};
    if (json) h["Content-Type"] = "application/json";
    if (apiKey) h["Authorization"] = "Bearer " + apiKey;
    return h;
  }

  // The message of an OpenAI-shaped error body ({"error": {"message": ...}}), or the status line.
  async function errorFrom(response) {
    let message = "";
    try {
      const text = await response.text();
      try {
        const body = JSON.parse(text);
        const err = body && body.error;
        message = (err && (typeof err === "string" ? err : err.message)) || (body && body.detail) || "";
      } catch (e) {
        message = text.slice(0, 300);
      }
    } catch (e) { /* body unreadable */ }
    const status = "HTTP " + response.status + (response.statusText ? " " + response.statusText : "");
    return new HttpError(response.status, message ? message + " (" + status + ")" : status);
  }

  // fetch() that asks for the API key on a 401 and tries again with it.
  async function authorizedFetch(url, options, json) {
    let reason = apiKey ? "The server rejected the saved API key." : "This server needs an API key.";
    for (;;) {
      const response = await fetch(url, Object.assign({}, options, { headers: headers(json) }));
      if (response.status !== 401) return response;
      const err = await errorFrom(response);
      const key = await askKey(reason + " " + err.message);
      if (key === null) throw err;
      reason = "The server rejected that key.";
    }
  }

  // ---- API key dialog -----------------------------------------------------------
  const dialog = $("key-dialog");
  let keyWaiters = [];  // resolve() of each pending askKey(): one answer serves them all

  function askKey(reason) {
    $("key-reason").textContent = reason;
    $("key-input").value = apiKey || "";
    // Seen in headless Chromium: a textarea that held the focus while a modal dialog opened
    // and was closed by a click took no more typed text.  Leaving it first avoids that.
    if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
    if (!dialog.open) dialog.showModal();
    $("key-input").focus();
    return new Promise((resolve) => { keyWaiters.push(resolve); });
  }

  dialog.addEventListener("close", () => {
    let result = null;
    if (dialog.returnValue === "save") {
      const key = $("key-input").value.trim();
      apiKey = key || null;
      save(KEY_STORE, apiKey);
      result = apiKey || "";
    }
    dialog.returnValue = "";
    const waiters = keyWaiters;
    keyWaiters = [];
    for (const resolve of waiters) resolve(result);
    if (!waiters.length && result !== null) loadModel();  // opened from the header button
    input.focus();
  });

  $("key-cancel").addEventListener("click", () => dialog.close("cancel"));
  $("key-button").addEventListener("click", () => { askKey("Enter the server's API key (empty: none)."); });

  // ---- conversation view ----------------------------------------------------------
  function bubble(role, text) {
    $("empty-hint").hidden = true;
    const div = document.createElement("div");
    div.className = "msg " + role;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : role === "assistant" ? (modelName || "Assistant") : "Error";
    const body = document.createElement("div");
    body.className = "body";
    div.append(who, body);
    if (role === "assistant") setReply(div, text || "");
    else body.textContent = text;
    log.append(div);
    scrollToEnd();
    return div;
  }

  function setReply(div, text) {
    div.dataset.raw = text;  // the reply as the model wrote it (Markdown source)
    div.querySelector(".body").innerHTML = window.PgMarkdown.render(text);
  }

  function note(div, text) {
    const p = document.createElement("p");
    p.className = "note";
    p.textContent = text;
    div.append(p);
  }

  function showError(message) {
    const div = bubble("error", message);
    div.setAttribute("role", "alert");
    return div;
  }

  function scrollToEnd() {
    const nearEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 120;
    if (nearEnd || busy === null) log.scrollTop = log.scrollHeight;
  }

  function setBusy(state) {
    busy = state;
    sendButton.hidden = state !== null;
    stopButton.hidden = state === null;
    log.setAttribute("aria-busy", state !== null ? "true" : "false");
    if (state === null) input.focus();
  }

  // ---- the model name ---------------------------------------------------------------
  async function loadModel() {
    const label = $("model-name");
    try {
      const response = await authorizedFetch("/v1/models", { method: "GET" }, false);
      if (!response.ok) throw await errorFrom(response);
      const body = await response.json();
      modelName = body && body.data && body.data[0] && body.data[0].id ? String(body.data[0].id) : null;
      label.textContent = modelName || "(no model)";
      label.classList.remove("offline");
    } catch (err) {
      label.textContent = "offline";
      label.classList.add("offline");
      label.title = describe(err);
    }
  }

  function describe(err) {
    if (err instanceof HttpError) return err.message;
    if (err && err.name === "TypeError") return "Cannot reach the server (" + err.message + ")";
    return String((err && err.message) || err);
  }

  // ---- sending and streaming --------------------------------------------------------------
  function requestBody() {
    const messages = [];
    const system = settings.system.value.trim();
    if (system) messages.push({ role: "system", content: system });
    messages.push(...history);
    const body = { messages, stream: true };
    if (modelName) body.model = modelName;
    const temperature = parseFloat(settings.temperature.value);
    if (Number.isFinite(temperature)) body.temperature = temperature;
    const maxTokens = parseInt(settings.maxTokens.value, 10);
    if (Number.isFinite(maxTokens) && maxTokens > 0) body.max_tokens = maxTokens;
    return body;
  }

  // Reads an SSE body; calls onData(parsed JSON) for each "data:" event until [DONE].
  async function readEvents(response, onData) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let data = [];
    const dispatch = () => {
      if (!data.length) return false;
      const payload = data.join("\n");
      data = [];
      if (payload.trim() === "[DONE]") return true;
      let parsed;
      try { parsed = JSON.parse(payload); } catch (e) { throw new Error("bad event from the server: " + payload.slice(0, 200)); }
      onData(parsed);
      return false;
    };
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = done ? "" : lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (dispatch()) { reader.cancel().catch(() => {}); return; }
        } else if (line.startsWith("data:")) {
          data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
        } // comments (":") and other fields are ignored
      }
      if (done) { dispatch(); return; }
    }
  }

  async function send(text) {
    const conversation = history;  // "New chat" replaces history; a late reply stays out of the new one
    conversation.push({ role: "user", content: text });
    const userDiv = bubble("user", text);
    const controller = new AbortController();
    const replyDiv = bubble("assistant", "");
    replyDiv.classList.add("streaming");
    setBusy({ controller, bubble: replyDiv });

    let reply = "";
    let finish = null;
    let pending = false;
    const paint = () => {
      pending = false;
      setReply(replyDiv, reply);
      scrollToEnd();
    };
    try {
      const response = await authorizedFetch("/v1/chat/completions", {
        method: "POST", body: JSON.stringify(requestBody()), signal: controller.signal,
      }, true);
      if (!response.ok) throw await errorFrom(response);
      await readEvents(response, (event) => {
        if (event && event.error) {
          const err = event.error;
          throw new Error(typeof err === "string" ? err : err.message || "error from the server");
        }
        const choice = event && event.choices && event.choices[0];
        if (!choice) return;
        const piece = choice.delta && typeof choice.delta.content === "string" ? choice.delta.content : "";
        if (piece) {
          reply += piece;
          if (!pending) { pending = true; requestAnimationFrame(paint); }
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      });
      paint();
      conversation.push({ role: "assistant", content: reply });
      if (finish === "length") note(replyDiv, "(cut off at the token limit)");
    } catch (err) {
      paint();
      if (err && err.name === "AbortError") {
        conversation.push({ role: "assistant", content: reply });  // keep what was said
        note(replyDiv, "(stopped)");
        replyDiv.classList.add("stopped");
      } else if (reply) {
        conversation.push({ role: "assistant", content: reply });
        note(replyDiv, "(interrupted)");
        showError(describe(err));
      } else {
        // Nothing came back: take the message out of the conversation and give it back for editing.
        conversation.pop();
        userDiv.remove();
        replyDiv.remove();
        if (!input.value) input.value = text;
        showError(describe(err));
      }
    } finally {
      replyDiv.classList.remove("streaming");
      replyDiv.dataset.done = finish || "stopped";
      setBusy(null);
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || busy) return;
    input.value = "";
    send(text);
  });

  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });

  stopButton.addEventListener("click", () => { if (busy) busy.controller.abort(); });

  $("new-chat").addEventListener("click", () => {
    if (busy) busy.controller.abort();
    history = [];
    for (const el of Array.from(log.children)) if (el.id !== "empty-hint") el.remove();
    $("empty-hint").hidden = false;
    input.value = "";
    input.focus();
  });

  $("settings-toggle").addEventListener("click", (e) => {
    const panel = $("settings");
    panel.hidden = !panel.hidden;
    e.currentTarget.setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) settings.system.focus();
  });
  for (const el of Object.values(settings)) el.addEventListener("change", saveSettings);

  // For tests and the curious: the conversation as it will be sent.
  window.pgChat = { history: () => history.slice(), model: () => modelName };

  restoreSettings();
  loadModel();
  input.focus();
})();

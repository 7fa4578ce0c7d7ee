// Chat Playground: talks to this endpoint's public API exactly as SDK users do (same routes, same secret).
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "endpoint-playground-key"; // sessionStorage: gone when the tab closes
const SAMPLERS = ["temperature", "top_p", "top_k", "repetition_penalty"];
const IMAGE_MAGIC = [["jpeg", [0xff, 0xd8, 0xff]], ["png", [0x89, 0x50, 0x4e, 0x47]], ["gif", [0x47, 0x49, 0x46, 0x38]]];
const STATUS_TEXT = {
  400: "The request was refused.", 401: "Invalid API secret: check it and connect again.",
  403: "This secret may not do that.", 404: "Model not found, or this secret may not use it.",
  413: "File too large.", 415: "Unsupported file type.", 429: "Too many requests.",
  500: "Server error.", 503: "The model is busy.",
};

const state = { key: sessionStorage.getItem(KEY_STORAGE) || "", models: [], history: [], image: null,
                abort: null, codeLang: "curl", recorder: null, recorded: null };

// --- HTTP -------------------------------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}), Authorization: `Bearer ${state.key}` };
  const response = await fetch(path, { ...options, headers });
  showRateLimits(response.headers);
  if (!response.ok) throw await apiError(response);
  return response;
}

async function apiError(response) {
  let detail = "";
  try { detail = (await response.json()).error?.message || ""; } catch { /* not JSON */ }
  let text = `${STATUS_TEXT[response.status] || `HTTP ${response.status}.`} ${detail}`.trim();
  const retry = response.headers.get("retry-after");
  if (retry && (response.status === 429 || response.status === 503)) text += ` Retry after ${retry} s.`;
  const error = new Error(text);
  error.status = response.status;
  return error;
}

function showRateLimits(headers) {
  const req = headers.get("x-ratelimit-remaining-requests");
  if (req === null) return;
  const tok = headers.get("x-ratelimit-remaining-tokens");
  $("rate").textContent = `Requests left: ${req}/${headers.get("x-ratelimit-limit-requests")} · ` +
    `tokens left: ${tok}/${headers.get("x-ratelimit-limit-tokens")} (per minute)`;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// --- secret and models ------------------------------------------------------------------------------

async function connect() {
  showError("");
  try {
    const body = await (await api("/v1/models")).json();
    state.models = body.data;
    sessionStorage.setItem(KEY_STORAGE, state.key);
    $("key-state").textContent = `connected · ${state.models.length} models`;
    $("model").replaceChildren(...state.models.map((m) => new Option(`${m.id} (${m.kind})`, m.id)));
    $("workspace").hidden = false;
    selectModel();
  } catch (error) {
    $("workspace").hidden = true;
    $("key-state").textContent = "";
    showError(error.message);
  }
}

const currentModel = () => state.models.find((m) => m.id === $("model").value);
const accepts = (model, input) => (model?.capabilities?.input || ["text"]).includes(input);

function selectModel() {
  const model = currentModel();
  const speech = accepts(model, "audio");
  const embedding = model?.kind === "embedding";
  $("chat-panel").hidden = speech || embedding;
  $("sampling").hidden = speech || embedding;
  $("structure").hidden = speech || embedding || !model?.capabilities?.structured_outputs;
  $("code").hidden = speech || embedding;
  $("speech-panel").hidden = !speech;
  $("embedding-panel").hidden = !embedding;
  // Translation into English is offered by multilingual speech models only
  $("task-picker").hidden = !model?.capabilities?.translation;
  if ($("task-picker").hidden) $("speech-task").value = "transcriptions";
  $("image-picker").hidden = !accepts(model, "image");
  if (!accepts(model, "image")) clearImage();
  const limits = model?.limits || {};
  $("model-info").textContent = speech
    ? `Speech recognition${model?.capabilities?.translation ? " and translation" : ""} · up to ` +
      `${mb(limits.max_audio_bytes)} and ${(limits.max_audio_seconds || 0) / 3600} h`
    : embedding ? "Text embeddings" : accepts(model, "image") ? `Text + image chat · images up to ${mb(limits.max_image_bytes)}, ` +
      `${limits.max_images_per_request} per request (${(limits.image_formats || []).join(", ")})` : "Text chat";
  renderCode();
}

const mb = (bytes) => `${Math.round((bytes || 0) / 1048576)} MB`;

// --- chat -------------------------------------------------------------------------------------------

function samplingFields() {
  const fields = {
    temperature: Number($("temperature").value), top_p: Number($("top_p").value),
    repetition_penalty: Number($("repetition_penalty").value), max_tokens: Number($("max_tokens").value),
  };
  if (Number($("top_k").value) > 0) fields.top_k = Number($("top_k").value);
  return fields;
}

function parsedJSON(id, what) {
  try {
    return JSON.parse($(id).value);
  } catch (error) {
    throw new Error(`The ${what} is not valid JSON: ${error.message}`);
  }
}

// Response format and tools, from the Output box (throws on invalid JSON, before anything is sent).
function outputFields() {
  const fields = {};
  const format = $("response_format").value;
  if (format === "json_object") fields.response_format = { type: "json_object" };
  if (format === "json_schema") {
    fields.response_format = { type: "json_schema",
                               json_schema: { name: "answer", schema: parsedJSON("json_schema", "JSON Schema") } };
  }
  if ($("tools").value.trim()) {
    fields.tools = parsedJSON("tools", "tools list");
    fields.tool_choice = $("tool_choice").value;
  }
  return fields;
}

function requestBody(messages) {
  const system = $("system").value.trim();
  return { model: $("model").value, messages: system ? [{ role: "system", content: system }, ...messages] : messages,
           ...samplingFields(), ...outputFields(), stream: true, stream_options: { include_usage: true } };
}

// Tool calls streamed as OpenAI deltas (id and name first, then arguments), shown as they complete.
function addToolCallDeltas(calls, deltas) {
  for (const delta of deltas || []) {
    const call = (calls[delta.index] ||= { id: "", type: "function", function: { name: "", arguments: "" } });
    if (delta.id) call.id = delta.id;
    if (delta.function?.name) call.function.name = delta.function.name;
    if (delta.function?.arguments) call.function.arguments += delta.function.arguments;
  }
}

function showToolCalls(reply, calls) {
  reply.tools.replaceChildren(...calls.filter(Boolean).map((call) =>
    Object.assign(document.createElement("code"), {
      className: "tool-call", textContent: `${call.function.name}(${call.function.arguments})` })));
}

function addBubble(role, text, imageUrl) {
  const bubble = document.createElement("div");
  bubble.className = `msg ${role}`;
  if (imageUrl) bubble.append(Object.assign(document.createElement("img"), { src: imageUrl, alt: "sent image" }));
  const thinking = Object.assign(document.createElement("span"), { className: "thinking" });
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  const tools = Object.assign(document.createElement("div"), { className: "tool-calls" });
  const meta = document.createElement("span");
  meta.className = "meta";
  bubble.append(thinking, body, tools, meta);
  $("conversation").append(bubble);
  $("conversation").scrollTop = $("conversation").scrollHeight;
  return { thinking, body, tools, meta };
}

async function send() {
  const text = $("message").value.trim();
  if (!text && !state.image) return;
  showError("");
  let extraFields;
  try {
    extraFields = outputFields();
  } catch (error) {
    showError(error.message);
    return;
  }
  const content = state.image
    ? [{ type: "text", text }, { type: "image_url", image_url: { url: state.image } }] : text;
  state.history.push({ role: "user", content });
  addBubble("user", text, state.image);
  $("message").value = "";
  clearImage();
  const reply = addBubble("assistant", "");
  state.abort = new AbortController();
  setBusy(true);
  let answer = "";
  let thought = "";
  const calls = [];
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(requestBody(state.history)), signal: state.abort.signal,
    });
    for await (const event of sseEvents(response)) {
      if (event.error) throw new Error(event.error.message);
      const delta = event.choices?.[0]?.delta || {};
      if (delta.reasoning_content) { thought += delta.reasoning_content; reply.thinking.textContent = thought; }
      if (delta.content) { answer += delta.content; reply.body.textContent = answer; }
      if (delta.tool_calls) { addToolCallDeltas(calls, delta.tool_calls); showToolCalls(reply, calls); }
      const finish = event.choices?.[0]?.finish_reason;
      if (finish) reply.meta.textContent = `finish: ${finish}`;
      if (event.usage) reply.meta.textContent += ` · ${event.usage.prompt_tokens} prompt + ` +
        `${event.usage.completion_tokens} completion tokens`;
    }
    state.history.push(calls.length ? { role: "assistant", content: answer || null, tool_calls: calls }
                                    : { role: "assistant", content: answer });
  } catch (error) {
    if (error.name === "AbortError") {
      reply.meta.textContent = "stopped";
      if (answer) state.history.push({ role: "assistant", content: answer });
    } else {
      state.history.pop(); // the turn failed: do not resend it with the next message
      reply.meta.textContent = "failed";
      showError(error.message);
    }
  } finally {
    setBusy(false);
    state.abort = null;
  }
}

async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const data = buffer.slice(0, end).split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("");
      buffer = buffer.slice(end + 2);
      if (data === "[DONE]") return;
      if (data) yield JSON.parse(data);
    }
  }
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
}

// --- images -----------------------------------------------------------------------------------------

async function attachImage(file) {
  const limits = currentModel()?.limits || {};
  const head = new Uint8Array(await file.slice(0, 12).arrayBuffer());
  const isWebp = String.fromCharCode(...head.slice(0, 4)) === "RIFF" && String.fromCharCode(...head.slice(8, 12)) === "WEBP";
  const known = isWebp || IMAGE_MAGIC.some(([, magic]) => magic.every((b, i) => head[i] === b));
  if (!known) return showError("Unsupported file type: images must be JPEG, PNG, WEBP or GIF.");
  if (file.size > limits.max_image_bytes) return showError(`File too large: images can be at most ${mb(limits.max_image_bytes)}.`);
  showError("");
  state.image = await new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
  $("attachment-preview").src = state.image;
  $("attachment").hidden = false;
}

function clearImage() {
  state.image = null;
  $("attachment").hidden = true;
  $("image-file").value = "";
}

// --- embeddings -------------------------------------------------------------------------------------

async function embed() {
  const texts = $("embedding-input").value.split("\n").map((t) => t.trim()).filter(Boolean);
  if (!texts.length) return showError("Write at least one line of text.");
  showError("");
  try {
    const result = await (await api("/v1/embeddings", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: $("model").value, input: texts, encoding_format: "float" }),
    })).json();
    const first = result.data[0].embedding;
    const cosine = (a, b) => a.reduce((sum, x, i) => sum + x * b[i], 0) /
      Math.sqrt(a.reduce((s, x) => s + x * x, 0) * b.reduce((s, x) => s + x * x, 0));
    const rows = result.data.map((d) => {
      const row = document.createElement("tr");
      const values = d.embedding.slice(0, 4).map((x) => x.toFixed(4)).join(", ") + ", …";
      for (const cell of [d.index, d.embedding.length, values, cosine(first, d.embedding).toFixed(3)]) {
        row.insertCell().textContent = String(cell);
      }
      return row;
    });
    $("embeddings").tBodies[0].replaceChildren(...rows);
    $("embeddings").hidden = false;
    $("embedding-usage").textContent = `${result.usage.prompt_tokens} tokens`;
  } catch (error) {
    showError(error.message);
  }
}

// --- speech -----------------------------------------------------------------------------------------

async function transcribe() {
  const file = $("audio-file").files[0] || state.recorded;
  if (!file) return showError("Choose an audio file or record first.");
  const limits = currentModel()?.limits || {};
  if (file.size > limits.max_audio_bytes) return showError(`File too large: audio can be at most ${mb(limits.max_audio_bytes)}.`);
  showError("");
  const form = new FormData();
  form.append("file", file, file.name || "recording.webm");
  form.append("model", $("model").value);
  form.append("response_format", "verbose_json");
  const task = $("speech-task").value;
  $("transcript").textContent = task === "translations" ? "Translating…" : "Transcribing…";
  $("speech-language").textContent = "";
  try {
    const result = await (await api(`/v1/audio/${task}`, { method: "POST", body: form })).json();
    $("transcript").textContent = result.text;
    if (result.language && task === "transcriptions") {
      $("speech-language").textContent = `Spoken language: ${result.language}`;
    }
    const rows = (result.segments || []).map((s) => {
      const row = document.createElement("tr");
      for (const cell of [s.start.toFixed(2), s.end.toFixed(2), s.text]) row.insertCell().textContent = cell;
      return row;
    });
    $("segments").tBodies[0].replaceChildren(...rows);
    $("segments").hidden = rows.length === 0;
  } catch (error) {
    $("transcript").textContent = "";
    showError(error.message);
  }
}

async function toggleRecording() {
  if (state.recorder) { state.recorder.stop(); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = [];
    state.recorder = new MediaRecorder(stream, { mimeType: "audio/webm" });
    state.recorder.ondataavailable = (e) => chunks.push(e.data);
    state.recorder.onstop = () => {
      stream.getTracks().forEach((t) => t.stop());
      state.recorded = new File(chunks, "recording.webm", { type: "audio/webm" });
      state.recorder = null;
      $("audio-file").value = "";
      $("record").textContent = "Record";
      $("recording-state").textContent = `Recorded ${Math.round(state.recorded.size / 1024)} kB: press Transcribe.`;
    };
    state.recorder.start();
    $("record").textContent = "Stop recording";
    $("recording-state").textContent = "Recording…";
  } catch (error) {
    showError(`Microphone unavailable: ${error.message}`);
  }
}

// --- equivalent code --------------------------------------------------------------------------------

function renderCode() {
  const last = { role: "user", content: $("message").value.trim() || "Hello!" };
  let body;
  try {
    body = { ...requestBody([last]), stream: false };
  } catch (error) {
    $("code-text").textContent = error.message;  // invalid JSON in the Output box
    return;
  }
  delete body.stream_options;
  const base = `${location.origin}/v1`;
  if (state.codeLang === "curl") {
    $("code-text").textContent = `curl -H "Content-Type: application/json" -H "x-api-key: $SECRET" \\\n` +
      `     -X POST "${base}/chat/completions" \\\n     -d '${JSON.stringify(body).replaceAll("'", "'\\''")}'`;
  } else {
    const { model, messages, top_k, repetition_penalty, ...rest } = body;
    delete rest.stream;
    const extra = { repetition_penalty, ...(top_k ? { top_k } : {}) };
    const args = Object.entries(rest).map(([k, v]) => `    ${k}=${py(v)},`).join("\n");
    $("code-text").textContent = `from openai import OpenAI\n\nclient = OpenAI(api_key=SECRET, base_url="${base}")\n` +
      `response = client.chat.completions.create(\n    model=${JSON.stringify(model)},\n` +
      `    messages=${py(messages)},\n${args}\n    extra_body=${py(extra)},\n)\n` +
      `print(response.choices[0].message.content)`;
  }
}

// A JSON value as a Python literal (True, False, None), for the equivalent Python call.
function py(value) {
  if (value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (Array.isArray(value)) return `[${value.map(py).join(", ")}]`;
  if (typeof value === "object") {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${py(v)}`).join(", ")}}`;
  }
  return JSON.stringify(value);
}

// --- wiring -----------------------------------------------------------------------------------------

function init() {
  $("api-key").value = state.key;
  $("key-form").addEventListener("submit", (e) => { e.preventDefault(); state.key = $("api-key").value.trim(); connect(); });
  $("model").addEventListener("change", selectModel);
  for (const id of SAMPLERS) {
    const out = document.querySelector(`output[for=${id}]`);
    const update = () => { out.textContent = $(id).value; renderCode(); };
    $(id).addEventListener("input", update);
    update();
  }
  for (const id of ["max_tokens", "system", "message"]) $(id).addEventListener("input", renderCode);
  $("response_format").addEventListener("change", () => {
    $("schema-box").hidden = $("response_format").value !== "json_schema";
    renderCode();
  });
  for (const id of ["json_schema", "tools", "tool_choice"]) $(id).addEventListener("input", renderCode);
  document.querySelectorAll("#code .tabs button").forEach((b) =>
    b.addEventListener("click", () => { state.codeLang = b.dataset.lang; renderCode(); }));
  $("copy-code").addEventListener("click", () => navigator.clipboard?.writeText($("code-text").textContent));
  $("chat-form").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  $("message").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); }
  });
  $("stop").addEventListener("click", () => state.abort?.abort());
  $("clear").addEventListener("click", () => { state.history = []; $("conversation").replaceChildren(); });
  $("image-file").addEventListener("change", () => $("image-file").files[0] && attachImage($("image-file").files[0]));
  $("remove-image").addEventListener("click", clearImage);
  const panel = $("chat-panel");
  panel.addEventListener("dragover", (e) => { e.preventDefault(); panel.classList.add("dragging"); });
  panel.addEventListener("dragleave", () => panel.classList.remove("dragging"));
  panel.addEventListener("drop", (e) => {
    e.preventDefault();
    panel.classList.remove("dragging");
    const file = e.dataTransfer.files[0];
    if (file && accepts(currentModel(), "image")) attachImage(file);
  });
  document.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData?.files || [])][0];
    if (file && accepts(currentModel(), "image")) attachImage(file);
  });
  $("speech-form").addEventListener("submit", (e) => { e.preventDefault(); transcribe(); });
  $("embedding-form").addEventListener("submit", (e) => { e.preventDefault(); embed(); });
  $("record").addEventListener("click", toggleRecording);
  if (state.key) connect();
}

init();

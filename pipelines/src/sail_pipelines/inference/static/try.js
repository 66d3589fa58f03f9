// The try-it page: a form generated from the OpenAPI document's Record schema, pre-filled with a
// holdout row; a CSV batch read in the browser and sent as JSON records; the server's own
// messages shown next to the field they name; the answer's explanation as signed contribution bars
// per source column, and its outlier flag when the server scores outliers.
"use strict";

const state = { features: [], properties: {}, example: {}, sail: {}, metrics: {}, task: null,
  unexplained: null };  // why the model has no explanations, once the server said so

const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

function kindOf(schema) {
  if (schema.enum) return "enum";
  const types = [].concat(schema.type || []);
  return types.find((t) => t !== "null") || "string";
}

function nullable(schema) {
  return schema.enum ? schema.enum.includes(null) : [].concat(schema.type || []).includes("null");
}

// A typed value from what a person typed (or a CSV cell): numbers as numbers where the schema
// wants one, "" as null; anything unreadable is sent as typed, and the server says what is wrong.
function typed(schema, text) {
  const kind = kindOf(schema);
  const raw = text.trim();
  if (raw === "") return null;
  if (kind === "number" || kind === "integer") return NUMBER.test(raw) ? Number(raw) : text;
  if (kind === "boolean") {
    const word = raw.toLowerCase();
    if (["true", "yes", "1"].includes(word)) return true;
    if (["false", "no", "0"].includes(word)) return false;
    return text;
  }
  if (kind === "enum") {
    const match = schema.enum.find((v) => v !== null && String(v) === raw);
    return match === undefined ? text : match;
  }
  return text;
}

function fieldId(name) {
  return "f-" + state.features.indexOf(name);
}

function buildForm() {
  const fields = clear(document.getElementById("fields"));
  for (const name of state.features) {
    const schema = state.properties[name];
    const id = fieldId(name);
    let input;
    if (kindOf(schema) === "enum" || kindOf(schema) === "boolean") {
      input = el("select", { id: id, name: name });
      const values = schema.enum ? schema.enum : [true, false].concat(nullable(schema) ? [null] : []);
      values.forEach((value, i) => input.append(
        el("option", { value: String(i), text: value === null ? "(null)" : String(value) })));
      input.dataset.values = JSON.stringify(values);
    } else {
      input = el("input", { id: id, name: name, type: "text", autocomplete: "off" });
    }
    const about = [kindOf(schema) === "enum" ? "one of the listed values" : kindOf(schema)];
    if (schema.description) about.push(schema.description);
    if (nullable(schema)) about.push("may be empty (null)");
    fields.append(el("div", { class: "field", id: id + "-row" },
      el("label", { for: id, text: name }), input, el("span", { class: "about", text: about.join("; ") }),
      el("span", { class: "error field-error", id: id + "-error", role: "alert" })));
  }
  fill(state.example);
}

function fill(record) {
  for (const name of state.features) {
    const input = document.getElementById(fieldId(name));
    const value = record[name] === undefined ? null : record[name];
    if (input.tagName === "SELECT") {
      const values = JSON.parse(input.dataset.values);
      const i = values.findIndex((v) => v === value);
      input.value = String(i < 0 ? 0 : i);
    } else {
      input.value = value === null ? "" : String(value);
    }
  }
}

function readForm() {
  const record = {};
  for (const name of state.features) {
    const input = document.getElementById(fieldId(name));
    record[name] = input.tagName === "SELECT" ? JSON.parse(input.dataset.values)[Number(input.value)]
      : typed(state.properties[name], input.value);
  }
  return record;
}

function clearErrors() {
  document.getElementById("form-error").textContent = "";
  for (const node of document.querySelectorAll(".field-error")) node.textContent = "";
  for (const node of document.querySelectorAll(".field.invalid")) node.classList.remove("invalid");
}

function showError(body, status) {
  const message = (body && body.error) || "the server answered " + status;
  const field = body && body.field;
  if (field && state.features.includes(field)) {
    document.getElementById(fieldId(field) + "-error").textContent = message;
    document.getElementById(fieldId(field) + "-row").classList.add("invalid");
  } else {
    document.getElementById("form-error").textContent = message;
  }
}

async function post(records, query) {
  const body = JSON.stringify(records);
  const limit = state.sail.max_body_bytes;
  if (limit && new Blob([body]).size > limit) {
    const error = "the request would be larger than " + limit + " bytes";
    return { ok: false, status: 413, body: { error: error } };
  }
  const response = await fetch("/predict" + (query || ""), {
    method: "POST", headers: { "Content-Type": "application/json" }, body: body,
  });
  let answer = null;
  try { answer = await response.json(); } catch (e) { /* no JSON body: the status says enough */ }
  return { ok: response.ok, status: response.status, body: answer };
}

function testError() {
  for (const name of ["rmse", "mae"]) {
    if (typeof state.metrics[name] === "number") return [name, state.metrics[name]];
  }
  return null;
}

function showResult(body) {
  const result = clear(document.getElementById("result"));
  const prediction = body.predictions[0];
  const probabilities = body.probabilities ? body.probabilities[0] : null;
  const answer = el("p", { class: "answer" }, "Prediction: ",
    el("strong", { id: "prediction", text: show(prediction) }));
  result.append(answer);
  if (probabilities) {
    const bars = el("div", { class: "bars", id: "probabilities" });
    for (const [label, p] of Object.entries(probabilities)) {
      const fill = el("div", { class: "fill" + (label === String(prediction) ? " top" : "") });
      fill.style.width = (100 * p).toFixed(1) + "%";
      bars.append(el("span", { text: label }), el("div", { class: "bar", title: String(p) }, fill),
        el("span", { text: (100 * p).toFixed(1) + " %" }));
    }
    result.append(bars);
  } else {
    const error = testError();
    if (error) answer.append(" ± " + error[1].toPrecision(3) + " (test " + error[0] + ")");
  }
  for (const stray of body.out_of_range || []) {
    result.append(el("p", { class: "hint", text: "'" + stray.field + "' = " + stray.value +
      " is outside the training range [" + stray.range.join(", ") + "]" }));
  }
  if (typeof body.outlier === "boolean") showOutlier(body);
}

// The outlier flag (and score) of the answer, when the server scores outliers.
function showOutlier(body) {
  const outlier = body.outlier;
  const score = typeof body.outlier_score === "number" ? body.outlier_score
    : Array.isArray(body.outlier_score) ? body.outlier_score[0] : null;
  const flag = Array.isArray(outlier) ? outlier[0] : outlier;
  const text = (flag ? "Outlier: this record is unlike the training data"
    : "Not an outlier: this record is like the training data") +
    (typeof score === "number" ? " (outlier score " + score.toPrecision(3) + ")" : "");
  document.getElementById("result").append(
    el("p", { id: "outlier", class: flag ? "error" : "hint", text: text }));
}

// Signed bars, largest |contribution| first, each with the column's value: how far each source
// column moved the output from the base value (in the space the explanation states).
function showExplanation(explanation, record) {
  const result = document.getElementById("result");
  const items = Object.entries(explanation.contributions)
    .sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
  const largest = Math.max(...items.map(([, c]) => Math.abs(c)), 1e-300);
  const about = "Why: " + explanation.base_value.toPrecision(4) + " on average, " +
    explanation.output.toPrecision(4) + " here (" + explanation.space +
    (explanation.class !== undefined ? " of " + show(explanation.class) : "") + ")";
  const bars = el("div", { class: "bars contributions", id: "contributions" });
  for (const [name, c] of items) {
    const fill = el("div", { class: "fill " + (c < 0 ? "negative" : "positive") });
    const width = 50 * Math.abs(c) / largest;
    fill.style.width = width.toFixed(2) + "%";
    fill.style.marginLeft = (c < 0 ? 50 - width : 50).toFixed(2) + "%";
    bars.append(el("span", { class: "column", text: name + " = " + show(record[name]) }),
      el("div", { class: "bar", title: String(c) }, fill),
      el("span", { class: "signed", text: (c < 0 ? "" : "+") + c.toPrecision(3) }));
  }
  result.append(el("p", { class: "hint", id: "explained", text: about }), bars);
}

async function predictOne(event) {
  event.preventDefault();
  clearErrors();
  clear(document.getElementById("result"));
  try {
    const record = readForm();
    let answer = await post(record, state.unexplained ? "" : "?explain=true");
    if (answer.status === 422 && answer.body && answer.body.field === "explain") {
      state.unexplained = answer.body.error;  // no explainer here: predict without asking again
      answer = await post(record);
    }
    if (!answer.ok) return showError(answer.body, answer.status);
    showResult(answer.body);
    if (answer.body.explanations) showExplanation(answer.body.explanations[0], record);
    else if (state.unexplained) {
      document.getElementById("result").append(
        el("p", { class: "hint", id: "explained", text: "No explanation: " + state.unexplained }));
    }
  } catch (error) {
    document.getElementById("form-error").textContent = String(error);
  }
}

// RFC 4180: quoted cells may hold commas, quotes ("") and line breaks.
function parseCSV(text) {
  const rows = [];
  let row = [], cell = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; }
      else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(cell); cell = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(cell); rows.push(row); row = []; cell = "";
    } else cell += c;
  }
  if (cell !== "" || row.length) { row.push(cell); rows.push(row); }
  return rows.filter((r) => r.length > 1 || r[0] !== "");
}

function csvCell(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}

let downloadUrl = null;

async function predictBatch() {
  const status = document.getElementById("batch-status");
  const table = document.getElementById("batch");
  const link = document.getElementById("download");
  clear(table.tHead); clear(table.tBodies[0]);
  link.classList.add("hidden");
  status.className = "";
  const file = document.getElementById("csv").files[0];
  if (!file) return;
  const rows = parseCSV(await file.text());
  const header = rows.shift() || [];
  const known = Object.keys(state.properties);
  const used = header.map((name, i) => [name, i]).filter(([name]) => known.includes(name));
  const dropped = header.filter((name) => !known.includes(name));
  const fail = (message) => { status.className = "error"; status.textContent = message; };
  if (!rows.length) return fail("the file has no rows under its header");
  if (rows.length > state.sail.max_records) {
    return fail(rows.length + " rows; the API takes at most " + state.sail.max_records + " per request");
  }
  const records = rows.map((row) => Object.fromEntries(used.map(([name, i]) =>
    [name, typed(state.properties[name], row[i] === undefined ? "" : row[i])])));
  status.textContent = "Sending " + records.length + " records…";
  const answer = await post(records);
  if (!answer.ok) {
    const body = answer.body || {};
    const where = [body.record !== undefined ? "row " + (body.record + 1) : null,
      body.field ? "'" + body.field + "'" : null].filter(Boolean).join(", ");
    return fail((where ? where + ": " : "") + (body.error || "the server answered " + answer.status));
  }
  const classes = answer.body.probabilities ? Object.keys(answer.body.probabilities[0]) : [];
  const columns = [...used.map(([name]) => name), "prediction", ...classes.map((c) => "p(" + c + ")")];
  const lines = records.map((record, r) => [...used.map(([name]) => record[name]), answer.body.predictions[r],
    ...classes.map((c) => answer.body.probabilities[r][c])]);
  table.tHead.append(el("tr", {}, ...columns.map((c) => el("th", { text: c }))));
  const shown = (v, i) => (i >= used.length + 1 && typeof v === "number" ? v.toFixed(4) : show(v));
  for (const line of lines) {
    table.tBodies[0].append(el("tr", {}, ...line.map((v, i) => el("td", { text: shown(v, i) }))));
  }
  status.textContent = records.length + " predictions" +
    (dropped.length ? " (columns not sent: " + dropped.join(", ") + ")" : "");
  const csv = [columns, ...lines].map((line) => line.map(csvCell).join(",")).join("\r\n") + "\r\n";
  if (downloadUrl) URL.revokeObjectURL(downloadUrl);
  downloadUrl = URL.createObjectURL(new Blob([csv], { type: "text/csv" }));
  link.href = downloadUrl;
  link.classList.remove("hidden");
}

function describeModel(meta) {
  const list = clear(document.getElementById("model"));
  const add = (label, value) => list.append(el("dt", { text: label }), el("dd", {}, value));
  add("Model", show(meta.registered_model || meta.name));
  add("Version", show(meta.model_version));
  add("Task", show(meta.task));
  add("Bundle", el("code", { text: show(meta.bundle_id) }));
  add("Trained", show(meta.created_at));
  add("Data hash", el("code", { text: show(meta.data_hash) }));
  add("Runtime", show(meta.inference && meta.inference.runtime));
  if (meta.model_card) {
    const card = String(meta.model_card);
    const web = /^https?:\/\//.test(card);  // an MLflow runs:/ URI is no link a browser can follow
    add("Model card", web ? el("a", { href: card, text: card }) : el("code", { text: card }));
  }
  const body = clear(document.querySelector("#metrics tbody"));
  const metrics = meta.metrics || {};
  for (const [name, value] of Object.entries(metrics)) {
    const text = typeof value === "number" ? value.toPrecision(4) : show(value);
    body.append(el("tr", {}, el("th", { text: name }), el("td", { text: text })));
  }
  if (!Object.keys(metrics).length) {
    body.append(el("tr", {}, el("td", { text: "no gate metrics in this bundle" })));
  }
}

async function main() {
  const [doc, meta] = await Promise.all([getJSON("/openapi.json"), getJSON("/metadata")]);
  const record = deref(doc, { $ref: "#/components/schemas/Record" });
  state.features = record.required;
  state.properties = record.properties;
  state.sail = doc.info["x-sail"] || {};
  state.example = state.sail.example || {};
  state.metrics = meta.metrics || {};
  document.title = "Try " + show(meta.registered_model || meta.name);
  document.getElementById("title").textContent = "Try " + show(meta.registered_model || meta.name);
  document.getElementById("limits").textContent = "at most " + state.sail.max_records + " rows and " +
    state.sail.max_body_bytes + " bytes";
  describeModel(meta);
  buildForm();
  document.getElementById("record").addEventListener("submit", predictOne);
  document.getElementById("reset").addEventListener("click", () => { clearErrors(); fill(state.example); });
  document.getElementById("csv").addEventListener("change", () => predictBatch().catch((error) => {
    document.getElementById("batch-status").textContent = String(error);
  }));
  document.body.dataset.ready = "true";
}

main().catch((error) => {
  document.getElementById("form-error").textContent = "Could not load the model's description: " + error;
});

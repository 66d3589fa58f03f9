// Interactive docs rendered from /openapi.json: each operation with its parameters, body,
// responses and a "Send" button that calls the API from this page.
"use strict";

const METHODS = ["get", "post"];

// A named schema as a link to it (under "Schemas"), any other as its JSON.
function schemaBlock(schema) {
  if (schema && typeof schema.$ref === "string" && Object.keys(schema).length === 1) {
    const name = schema.$ref.split("/").pop();
    return el("p", {}, "schema ", el("a", { href: "#schema-" + name, text: name }));
  }
  return el("pre", { text: JSON.stringify(schema, null, 2) });
}

function example(doc, media) {
  if (!media) return undefined;
  if (media.example !== undefined) return media.example;
  const named = Object.values(media.examples || {});
  if (named.length) return named[0].value;
  const schema = deref(doc, media.schema);
  return schema.examples ? schema.examples[0] : undefined;
}

function operation(doc, path, method, op, shared) {
  const params = [...(shared || []), ...(op.parameters || [])];
  const body = op.requestBody && op.requestBody.content["application/json"];
  const details = el("details", { id: "op-" + method + "-" + path.replace(/[^a-z0-9]+/gi, "-") },
    el("summary", {}, el("span", { class: "method " + method, text: method }), el("code", { text: path }),
      " — " + (op.summary || "")));
  if (op.description) details.append(el("p", { text: op.description }));
  const inputs = {};
  for (const param of params) {
    const schema = param.schema || {};
    const value = schema.enum && schema.enum.length ? String(schema.enum[0]) : "";
    inputs[param.name] = el("input", { type: "text", value: value, "aria-label": param.name });
    details.append(el("div", { class: "field" }, el("label", { text: param.name + " (" + param.in + ")" }),
      inputs[param.name], el("span", { class: "about", text: param.description || "" })));
  }
  const query = params.filter((param) => param.in === "query").map((param) => param.name);
  let text = null;
  if (body) {
    details.append(el("h4", { text: "Request body" }));
    text = el("textarea", { "aria-label": "request body" });
    const sample = example(doc, body);
    text.value = sample === undefined ? "" : JSON.stringify(sample, null, 2);
    details.append(text, el("details", {}, el("summary", { text: "schema" }), schemaBlock(body.schema)));
  }
  const send = el("button", { type: "button", text: "Send" });
  const answer = el("pre", { class: "answer-body" });
  send.addEventListener("click", async () => {
    let url = path;
    for (const [name, input] of Object.entries(inputs)) {
      url = url.replace("{" + name + "}", encodeURIComponent(input.value));
    }
    const asked = query.filter((name) => inputs[name].value !== "")
      .map((name) => name + "=" + encodeURIComponent(inputs[name].value));
    if (asked.length) url += "?" + asked.join("&");
    const init = { method: method.toUpperCase() };
    if (text) {
      init.headers = { "Content-Type": "application/json" };
      init.body = text.value;
    }
    answer.textContent = "…";
    try {
      const response = await fetch(url, init);
      const raw = await response.text();
      let shown = raw;
      try { shown = JSON.stringify(JSON.parse(raw), null, 2); } catch (e) { /* not JSON: as it came */ }
      answer.textContent = response.status + " " + response.statusText + "\n\n" + shown;
    } catch (error) {
      answer.textContent = String(error);
    }
  });
  details.append(el("p", {}, send), answer, el("h4", { text: "Responses" }));
  const list = el("dl");
  for (const [code, response] of Object.entries(op.responses || {})) {
    const media = response.content && Object.values(response.content)[0];
    list.append(el("dt", { text: code }), el("dd", {}, response.description || "",
      media && media.schema ? schemaBlock(media.schema) : null));
  }
  details.append(list);
  return details;
}

async function main() {
  const doc = await getJSON("/openapi.json");
  document.title = doc.info.title + " — docs";
  document.getElementById("title").textContent = doc.info.title + " (v" + doc.info.version + ")";
  document.getElementById("description").textContent = doc.info.description || "";
  const ops = document.getElementById("operations");
  const byTag = {};
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) {
      if (!item[method]) continue;
      const tag = (item[method].tags || ["API"])[0];
      (byTag[tag] = byTag[tag] || []).push(operation(doc, path, method, item[method], item.parameters));
    }
  }
  for (const [tag, nodes] of Object.entries(byTag)) ops.append(el("h2", { text: tag }), ...nodes);
  const schemas = document.getElementById("schemas");
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    const summary = el("summary", {}, el("code", { text: name }));
    const json = el("pre", { text: JSON.stringify(schema, null, 2) });
    schemas.append(el("details", { id: "schema-" + name }, summary, json));
  }
}

main().catch((error) => {
  document.getElementById("description").textContent = "Could not load the API document: " + error;
});

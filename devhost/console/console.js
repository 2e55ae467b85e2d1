// The sandbox console: lists what the sandbox received and sends through the real endpoints.
// Everything shown is set with textContent: message bodies are user input.
"use strict";

const $ = (selector) => document.querySelector(selector);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function statusBadge(status) {
  const badge = element("span", "status", status);
  badge.dataset.status = status;
  return badge;
}

function renderMessage(message) {
  const card = element("li", "message");
  card.dataset.sid = message.sid;
  const meta = element("div", "meta");
  meta.append(element("span", "", `To ${message.to} · from ${message.from || message.messaging_service_sid}`), statusBadge(message.status));
  card.append(meta, element("div", "bubble", message.body || "(media only)"));
  const details = [`${message.num_segments} segment(s)`];
  if (message.media_url && message.media_url.length) details.push(`${message.media_url.length} media`);
  if (message.error_code) details.push(`error ${message.error_code}`);
  card.append(element("div", "meta", details.join(" · ")));
  return card;
}

function renderCall(call, alerts) {
  const card = element("li", "call");
  card.dataset.sid = call.sid;
  const meta = element("div", "meta");
  meta.append(element("span", "", `To ${call.to} · from ${call.from}`), statusBadge(call.status));
  card.append(meta);
  const heard = element("ol", "heard");
  for (const verb of call.heard || []) {
    heard.append(element("li", verb.verb.toLowerCase(), verb.verb === "Say" ? `“${verb.text}” (${verb.voice || "default voice"})` : `${verb.verb} ${verb.url || ""}`));
  }
  if (heard.children.length) card.append(element("div", "meta", "The callee heard:"), heard);
  if (call.twiml_request) {
    const details = element("details");
    details.append(element("summary", "", `TwiML from ${call.twiml_request.url}`), element("pre", "", call.twiml_request.body || call.twiml_request.error || ""));
    card.append(details);
  }
  // A TwiML failure is not the call's status: Twilio reports it in its Debugger.
  for (const alert of alerts.filter((a) => a.resource_sid === call.sid)) {
    card.append(element("div", "meta", `Debugger: error ${alert.error_code}: ${alert.alert_text}`));
  }
  return card;
}

function renderList(list, items, render, emptyText) {
  const open = new Set([...list.querySelectorAll("details[open]")].map((d) => d.closest("li").dataset.sid));
  list.replaceChildren(...(items.length ? items.slice().reverse().map(render) : [element("li", "empty", emptyText)]));
  for (const details of list.querySelectorAll("details")) {
    if (open.has(details.closest("li").dataset.sid)) details.open = true;
  }
}

async function refresh() {
  try {
    const response = await fetch("/sandbox/state");
    const state = await response.json();
    renderList($("#messages"), state.messages, renderMessage, "No messages yet.");
    renderList($("#calls"), state.calls, (call) => renderCall(call, state.alerts), "No calls yet.");
  } catch (error) {
    console.warn("sandbox console: refresh failed", error);
  }
}

function wire(form, url, resultNode) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const payload = Object.fromEntries([...new FormData(form)].filter(([, value]) => value !== ""));
    resultNode.className = "result";
    resultNode.textContent = "Sending…";
    const response = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
    const body = await response.json();
    if (response.ok) {
      resultNode.textContent = `${response.status}: ${body.sid} ${body.status}`;
    } else {
      resultNode.className = "result error";
      resultNode.textContent = `${response.status}: ${body.detail || body.title}`;
    }
    refresh();
  });
}

wire($("#sms-form"), "/api/SendSms", $("#sms-result"));
wire($("#call-form"), "/api/MakeCall", $("#call-result"));
refresh();
setInterval(refresh, 1000);

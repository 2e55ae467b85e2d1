// The sandbox console's inbound calls: ring the app's number as a caller would, follow each
// step the sandbox takes as Twilio (webhook, dial, recording, callbacks), and list the
// voicemails the app stored. Everything shown is set with textContent: numbers and TwiML are input.
"use strict";

(() => {
  // $, element and statusBadge are console.js's, loaded first (index.html).
  function renderCall(call) {
    const card = element("li", "call inbound");
    card.dataset.sid = call.sid;
    const meta = element("div", "meta");
    meta.append(element("span", "", `From ${call.from} · to ${call.to}`), statusBadge(call.status));
    const steps = element("ol", "steps");
    for (const step of call.steps) {
      steps.append(element("li", "step", `${step.step} ${step.target} → ${step.outcome}`));
    }
    const heard = element("ol", "heard");
    for (const verb of call.heard) {
      heard.append(element("li", verb.verb.toLowerCase(), verb.verb === "Say" ? `“${verb.text}” (${verb.voice || "default voice"})` : `${verb.verb} ${verb.url || ""}`));
    }
    card.append(meta, element("div", "meta", "What the sandbox did, as Twilio:"), steps);
    if (heard.children.length) card.append(element("div", "meta", "The caller heard:"), heard);
    return card;
  }

  function renderVoicemail(voicemail) {
    const card = element("li", "voicemail");
    card.dataset.recordingSid = voicemail.recording_sid;
    const meta = element("div", "meta");
    meta.append(element("span", "", `From ${voicemail.from_number || "unknown"} · to ${voicemail.to_number || "unknown"} · ${voicemail.at}`), statusBadge(voicemail.status));
    card.append(meta);
    const details = [`${voicemail.recording_sid}`, `call ${voicemail.call_sid}`];
    if (voicemail.duration !== null) details.push(`${voicemail.duration} s`);
    if (voicemail.error_code) details.push(`error ${voicemail.error_code}`);
    card.append(element("div", "meta", details.join(" · ")));
    if (voicemail.url && /^https?:\/\//.test(voicemail.url)) {
      const link = element("a", "recording", "Recording (at Twilio; the app never downloads it)");
      link.href = voicemail.url;
      card.append(link);
    }
    return card;
  }

  function renderList(list, items, render, emptyText) {
    list.replaceChildren(...(items.length ? items.map(render) : [element("li", "empty", emptyText)]));
  }

  async function refreshInbound() {
    try {
      const state = await (await fetch("/sandbox/incoming-calls")).json();
      renderList($("#inbound-calls"), state.calls.slice().reverse(), renderCall, "No inbound calls yet.");
      renderList($("#voicemails"), state.voicemails, renderVoicemail, "No voicemails yet.");
    } catch (error) {
      console.warn("sandbox console: inbound refresh failed", error);
    }
  }

  $("#inbound-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = $("#inbound-result");
    result.className = "result";
    result.textContent = "Ringing…";
    const payload = Object.fromEntries([...new FormData(event.target)].filter(([, value]) => value !== ""));
    const response = await fetch("/sandbox/incoming-calls", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
    const body = await response.json();
    if (response.ok) {
      result.textContent = `${response.status}: ${body.sid} ringing ${body.to}`;
    } else {
      result.className = "result error";
      result.textContent = `${response.status}: ${body.error}`;
    }
    refreshInbound();
  });

  refreshInbound();
  setInterval(refreshInbound, 1000);
})();

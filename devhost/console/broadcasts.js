// The sandbox console's broadcasts: start one, watch each one's progress live, cancel one.
// Ids come from the Durable stand-in (/sandbox/broadcasts); everything else through the
// app's own routes, so the page sees and cancels only what its caller (this machine) may.
"use strict";

(() => {
  // $ and element are console.js's, loaded first (index.html).
  const OUTCOMES = ["pending", "sent", "failed", "canceled", "notSent", "unknown"];

  function renderBroadcast(id, view) {
    const card = element("li", "broadcast");
    card.dataset.id = id;
    if (view === null) {
      card.append(element("div", "meta", `${id}: another caller's broadcast`));
      return card;
    }
    const meta = element("div", "meta");
    const status = element("span", "status", view.cancelled ? "Cancelled" : view.runtimeStatus);
    status.dataset.status = view.cancelled ? "canceled" : view.runtimeStatus.toLowerCase();
    meta.append(element("span", "", `${id} · ${view.total} recipient(s) · ${view.rejected} rejected`), status);
    const bar = element("progress");
    bar.max = 1;
    bar.value = view.progress;
    bar.textContent = `${Math.round(view.progress * 100)} %`;
    const counts = OUTCOMES.filter((o) => view.counts[o]).map((o) => `${o} ${view.counts[o]}`);
    card.append(meta, bar, element("div", "meta counts", counts.join(" · ")));
    if (!view.cancelled && ["Pending", "Running"].includes(view.runtimeStatus)) {
      const cancel = element("button", "cancel", "Cancel");
      cancel.type = "button";
      cancel.addEventListener("click", async () => {
        cancel.disabled = true;
        await fetch(`/api/broadcasts/${encodeURIComponent(id)}`, { method: "DELETE" });
        refreshBroadcasts();
      });
      card.append(cancel);
    }
    return card;
  }

  async function view(id) {
    const response = await fetch(`/api/broadcasts/${encodeURIComponent(id)}?limit=1`);
    return response.ok ? response.json() : null;
  }

  async function refreshBroadcasts() {
    try {
      const { broadcasts } = await (await fetch("/sandbox/broadcasts")).json();
      const views = await Promise.all(broadcasts.map(view));
      const list = $("#broadcasts");
      list.replaceChildren(
        ...(broadcasts.length
          ? broadcasts.map((id, i) => renderBroadcast(id, views[i]))
          : [element("li", "empty", "No broadcasts yet.")]),
      );
    } catch (error) {
      console.warn("sandbox console: broadcasts refresh failed", error);
    }
  }

  $("#broadcast-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const to = String(form.get("to")).split(/[\s,]+/).filter(Boolean);
    const result = $("#broadcast-result");
    result.className = "result";
    result.textContent = "Starting…";
    const response = await fetch("/api/broadcasts", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Idempotency-Key": crypto.randomUUID() },
      body: JSON.stringify({ to, body: form.get("body") }),
    });
    const body = await response.json();
    if (response.ok) {
      result.textContent = `${response.status}: ${body.id}, ${body.accepted} accepted, ${body.rejected.length} rejected`;
    } else {
      result.className = "result error";
      result.textContent = `${response.status}: ${body.detail || body.title}`;
    }
    refreshBroadcasts();
  });

  refreshBroadcasts();
  setInterval(refreshBroadcasts, 1000);
})();

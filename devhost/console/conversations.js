// The sandbox console's conversations: one card per phone the sandbox texted (or that texted
// back), its messages as that phone shows them, and a "reply as the phone" box. A reply makes
// the sandbox post the signed webhook Twilio would to the app's /api/IncomingSms.
// Cards are updated in place, so a reply being typed survives the live refresh.
"use strict";

(() => {
  // $ and element are console.js's, loaded first (index.html).
  const cards = new Map(); // phone -> {card, bubbles}

  function phoneOf(message) {
    return message.direction === "inbound" ? message.from : message.to;
  }

  function bubble(message) {
    const mine = message.direction === "inbound"; // the phone's own text
    const item = element("li", mine ? "said phone" : "said app");
    item.dataset.sid = message.sid;
    item.append(element("div", "bubble", message.body || "(media only)"));
    const meta = [mine ? `to ${message.to}` : `from ${message.from || message.messaging_service_sid}`];
    if (message.direction === "outbound-reply") meta.push("Twilio's reply");
    if (message.status && !mine) meta.push(message.status);
    if (message.webhook) meta.push(`app answered ${message.webhook.response}`);
    item.append(element("div", "meta", meta.join(" · ")));
    return item;
  }

  function newCard(phone) {
    const card = element("li", "conversation");
    card.dataset.phone = phone;
    const bubbles = element("ol", "bubbles");
    const form = element("form", "reply");
    const input = element("input");
    input.name = "body";
    input.placeholder = "Reply as the phone (try STOP, START)";
    input.required = true;
    input.maxLength = 1600;
    const send = element("button", "", "Reply as the phone");
    send.type = "submit";
    const result = element("p", "result");
    result.setAttribute("role", "status");
    form.append(input, send, result);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      send.disabled = true;
      result.className = "result";
      result.textContent = "Sending…";
      try {
        const response = await fetch("/sandbox/reply", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ phone, body: input.value }),
        });
        const body = await response.json();
        if (response.ok) {
          result.textContent = `Sent; the app answered ${body.webhook.response}`;
          input.value = "";
        } else {
          result.className = "result error";
          result.textContent = body.error;
        }
      } finally {
        send.disabled = false;
        refreshConversations();
      }
    });
    card.append(element("div", "meta", phone), bubbles, form);
    return { card, bubbles };
  }

  async function refreshConversations() {
    try {
      const state = await (await fetch("/sandbox/state")).json();
      const byPhone = new Map();
      for (const message of state.messages) {
        if (!byPhone.has(phoneOf(message))) byPhone.set(phoneOf(message), []);
        byPhone.get(phoneOf(message)).push(message);
      }
      const list = $("#conversations");
      for (const [phone, messages] of byPhone) {
        if (!cards.has(phone)) {
          cards.set(phone, newCard(phone));
          list.prepend(cards.get(phone).card);
        }
        const { bubbles } = cards.get(phone);
        const sids = messages.map((m) => `${m.sid}:${m.status}:${m.webhook ? m.webhook.response : ""}`).join();
        if (bubbles.dataset.shown !== sids) {
          bubbles.replaceChildren(...messages.map(bubble));
          bubbles.dataset.shown = sids;
        }
      }
      for (const [phone, { card }] of cards) {
        if (!byPhone.has(phone)) {
          card.remove(); // the sandbox was reset
          cards.delete(phone);
        }
      }
      const empty = list.querySelector(".empty");
      if (cards.size && empty) empty.remove();
      if (!cards.size && !empty) list.append(element("li", "empty", "No conversations yet."));
    } catch (error) {
      console.warn("sandbox console: conversations refresh failed", error);
    }
  }

  refreshConversations();
  setInterval(refreshConversations, 1000);
})();

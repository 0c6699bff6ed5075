// callsec agent desk: the masked summary card of a capture and its field controls (#18).
// The card lists every field of the capture (brand, last 4, valid / invalid with the reason,
// cancelled / skipped) and how the capture was stored; it stays after the capture ends until
// the agent dismisses it. While the capture runs, each field has "Ask again" and "Cancel"
// (and "Skip" when the field is optional); after a stored capture, "Ask again" re-opens it. Values are set with textContent, never as markup.
"use strict";
(function () {
  function create(captureId, fields) {
    return { captureId: captureId || null, order: fields ? fields.slice() : [], fields: {},
             optional: {}, asking: null, outcome: null, reason: "", storedAs: "" };
  }
  function touch(summary, field) {
    if (field && summary.order.indexOf(field) < 0) { summary.order.push(field); }
  }
  // One capture event (SSE topic "capture") -> the summary (a new one for a new capture).
  function onEvent(summary, data) {
    if (!summary || (data.capture_id && summary.captureId && data.capture_id !== summary.captureId)) {
      summary = create(data.capture_id, null);
    }
    if (data.capture_id) { summary.captureId = data.capture_id; }
    const field = data.field;
    switch (data.stage) {
      case "requested":  // a new capture, or this one re-opened for a field
        summary.outcome = null;
        if (data.fields) { String(data.fields).split(",").forEach((f) => touch(summary, f)); }
        break;
      case "field_started":
        touch(summary, field);
        summary.asking = field;
        if (data.optional) { summary.optional[field] = true; }
        break;
      case "field_requested":
        delete summary.fields[field];
        break;
      case "field_cancelled":
      case "field_skipped":
        touch(summary, field);
        summary.fields[field] = { status: data.status || data.stage.slice(6) };
        break;
      case "finished":
        summary.asking = null;
        summary.outcome = data.result || null;
        summary.reason = data.reason || "";
        summary.storedAs = data.stored_as || "";
        break;
      default:
        if (data.valid !== undefined && field) {  // field_done / field_invalid (or no stage)
          touch(summary, field);
          summary.fields[field] = { valid: !!data.valid, brand: data.brand || "",
                                    last: data.last_digits || data.last4 || "",
                                    reason: data.reason_id || "" };
        }
    }
    return summary;
  }
  function fieldText(t, field, r) {
    let text = t("field." + field) + ": ";
    if (!r) { return text + t("summary.pending"); }
    if (r.status) { return text + t("summary." + r.status); }
    text += (r.brand ? r.brand.toUpperCase() + " " : "") + (r.last ? "•••• " + r.last + " " : "");
    text += "(" + (r.valid ? t("valid") : t("invalid")) + ")";
    if (!r.valid && r.reason) {
      const key = "reason." + r.reason;
      text += " " + (t(key) !== key ? t(key) : r.reason);
    }
    return text;
  }
  function button(cls, label, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = cls;
    b.textContent = label;
    b.addEventListener("click", onClick);
    return b;
  }
  // Renders into the call's .result element; control(field, action) and dismiss() are the
  // desk's API calls.
  function render(el, summary, t, running, control) {
    el.replaceChildren();
    el.className = "result";
    if (!summary) { return; }
    const head = document.createElement("div");
    head.className = "summary-head";
    if (summary.outcome) {
      const key = summary.outcome === "captured" ? "captured" : summary.outcome === "cancelled"
        ? "cancelled" : "summary.outcome." + summary.outcome;
      head.textContent = (t(key) !== key ? t(key) : summary.outcome) +
        (summary.storedAs ? " · " + t("stored." + summary.storedAs) : "");
      el.classList.add(summary.outcome === "captured" ? "ok" : "bad");
    }
    el.appendChild(head);
    const list = document.createElement("ul");
    list.className = "summary-fields";
    summary.order.forEach((field) => {
      const r = summary.fields[field];
      if (!r && !running && !summary.outcome) { return; }
      const li = document.createElement("li");
      li.dataset.field = field;
      li.className = r ? (r.status ? "dropped" : r.valid ? "ok" : "bad") : "pending";
      const text = document.createElement("span");
      text.className = "summary-field";
      text.textContent = fieldText(t, field, r) + (running && summary.asking === field
        ? " · " + t("summary.asking") : "");
      li.appendChild(text);
      if (!running && summary.outcome === "captured" && r && !r.status) {  // re-opens it
        li.appendChild(button("rerequest", t("summary.askAgain"), () => control(field, "rerequest")));
      }
      if (running && !(r && r.status)) {
        li.appendChild(button("rerequest", t("summary.askAgain"), () => control(field, "rerequest")));
        li.appendChild(button("cancel-field", t("summary.cancelField"), () => control(field, "cancel")));
        if (summary.optional[field]) {
          li.appendChild(button("skip", t("summary.skip"), () => control(field, "skip")));
        }
      }
      list.appendChild(li);
    });
    el.appendChild(list);
  }
  window.CALLSEC_SUMMARY = { create, onEvent, render };
})();

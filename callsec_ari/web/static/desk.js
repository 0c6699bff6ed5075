// callsec agent desk: sign-in, active calls, capture buttons, live masked progress (SSE).
// No inline scripts (strict CSP); every value is set with textContent, never as markup.
"use strict";
(function () {
  const I18N = window.CALLSEC_I18N;
  const SUMMARY = window.CALLSEC_SUMMARY;  // desk-summary.js: the capture's masked summary card
  const FIELDS = { card: ["card_number", "expiry", "cvv"], bank: ["iban"], id: ["national_id"],
    bank_us: ["routing_number", "account_number"] };
  const POLL_MS = 2000;
  const state = { lang: "en", me: null, calls: new Map(), streams: new Map(), timers: [],
                  auditSince: null };
  const $ = (id) => document.getElementById(id);

  // -- language -------------------------------------------------------------------------
  function t(key) {
    const table = I18N[state.lang] || I18N.en;
    return table[key] !== undefined ? table[key] : (I18N.en[key] !== undefined ? I18N.en[key] : key);
  }
  function applyLanguage() {
    document.documentElement.lang = state.lang;
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    $("lang").value = state.lang;
    if (state.me) { renderCalls(); }
  }
  function initLanguage() {
    let lang = null;
    try { lang = window.localStorage.getItem("callsec.lang"); } catch (e) { lang = null; }
    if (!lang) { lang = (navigator.language || "en").toLowerCase().startsWith("de") ? "de" : "en"; }
    state.lang = I18N[lang] ? lang : "en";
    $("lang").addEventListener("change", (ev) => {
      state.lang = ev.target.value;
      try { window.localStorage.setItem("callsec.lang", state.lang); } catch (e) { /* private mode */ }
      applyLanguage();
    });
    applyLanguage();
  }

  // -- API ------------------------------------------------------------------------------
  function csrfToken() {
    const match = document.cookie.split("; ").find((c) => c.startsWith("callsec_csrf="));
    return match ? decodeURIComponent(match.split("=")[1]) : "";
  }
  // background: a timed poll, not the user's action (does not keep an idle session alive)
  async function api(method, path, body, background) {
    const headers = { "Accept": "application/json" };
    if (method !== "GET") { headers["X-CSRF-Token"] = csrfToken(); }
    if (background) { headers["X-Callsec-Background"] = "1"; }
    if (body !== undefined) { headers["Content-Type"] = "application/json"; }
    let response;
    try {
      response = await fetch(path, { method, headers, credentials: "same-origin",
                                     body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      return { ok: false, status: 0, data: { error_id: "network", message: "" } };
    }
    let data = {};
    try { data = await response.json(); } catch (e) { data = {}; }
    return { ok: response.ok, status: response.status, data };
  }
  function errorText(data) {
    const key = "error." + (data && data.error_id);
    const known = t(key) !== key;
    const wait = data && data.details ? String(data.details.retry_after_seconds || "") : "";
    return known ? t(key).replace("{s}", wait)
      : t("error.other") + (data && data.error_id ? " (" + data.error_id + ")" : "");
  }

  // -- sign-in --------------------------------------------------------------------------
  async function login(ev) {
    ev.preventDefault();
    $("login-error").textContent = "";
    const res = await api("POST", "/api/v1/login", {
      username: $("username").value.trim(), password: $("password").value,
      otp: $("otp").value.trim(), session: "cookie" });
    $("password").value = "";
    $("otp").value = "";
    if (!res.ok) { $("login-error").textContent = errorText(res.data); return; }
    await start();
  }
  async function logout() {
    await api("POST", "/api/v1/logout");
    stop();
    showLogin();
  }
  function showLogin() {
    state.me = null;
    $("desk-view").classList.add("hidden");
    $("logout").classList.add("hidden");
    $("whoami").textContent = "";
    $("login-view").classList.remove("hidden");
  }
  function stop() {
    state.timers.forEach((id) => window.clearInterval(id));
    state.timers = [];
    state.streams.forEach((es) => es.close());
    state.streams.clear();
    state.calls.clear();
    $("calls").replaceChildren();
  }
  async function start() {
    const res = await api("GET", "/api/v1/me");
    if (!res.ok) { showLogin(); return; }
    state.me = res.data;
    const perms = new Set(state.me.permissions);
    $("login-view").classList.add("hidden");
    $("desk-view").classList.remove("hidden");
    $("logout").classList.remove("hidden");
    $("whoami").textContent = state.me.username + " · " + state.me.role;
    const seesCalls = perms.has("calls.view_own") || perms.has("calls.view_team");
    $("calls-view").classList.toggle("hidden", !seesCalls);
    $("calls-title").dataset.i18n = perms.has("calls.view_team") ? "teamCalls" : "myCalls";
    const auditPath = perms.has("audit.read") ? "/api/v1/audit"
      : perms.has("audit.read_team") ? "/api/v1/team/audit" : null;
    $("audit-view").classList.toggle("hidden", !auditPath);
    applyLanguage();
    if (seesCalls) {
      await refreshCalls();
      state.timers.push(window.setInterval(() => refreshCalls(true), POLL_MS));
    }
    if (auditPath) {
      await refreshAudit(auditPath);
      state.timers.push(window.setInterval(() => refreshAudit(auditPath, true), 5000));
    }
  }

  // -- calls ----------------------------------------------------------------------------
  async function refreshCalls(background) {
    const res = await api("GET", "/api/v1/calls", undefined, background);
    if (res.status === 401) { stop(); showLogin(); return; }
    if (!res.ok) { return; }
    const seen = new Set();
    res.data.calls.forEach((call) => {
      seen.add(call.call_id);
      const known = state.calls.get(call.call_id) || { progress: null, result: null, error: "" };
      state.calls.set(call.call_id, Object.assign(known, { info: call }));
      if (!state.streams.has(call.call_id)) { openStream(call.call_id); }
    });
    // a fraud warning stays on the desk after its call ended (until the page is reloaded)
    state.calls.forEach((entry, id) => { if (!seen.has(id) && !entry.fraud) { forget(id); } });
    renderCalls();
  }
  function forget(id) {
    const es = state.streams.get(id);
    if (es) { es.close(); }
    state.streams.delete(id);
    state.calls.delete(id);
  }
  function openStream(id) {
    const es = new EventSource("/api/v1/calls/" + encodeURIComponent(id) + "/events");
    state.streams.set(id, es);
    const onEvent = (ev) => {
      const entry = state.calls.get(id);
      if (!entry) { return; }
      const data = JSON.parse(ev.data);
      if (ev.type === "snapshot") { entry.info = Object.assign(entry.info || {}, data); }
      else if (ev.type === "verification" && (data.result || data.fraud_warning)) {
        if (data.result) { entry.info.verification = data.result; }
        if (data.fraud_warning || data.result === "denied") { entry.fraud = true; }
      }
      else if (ev.type === "call" && data.stage) { entry.info.state = data.stage; }
      else if (ev.type === "capture") { onCapture(entry, data); }
      else if (ev.type === "approval") { onApproval(entry, data); }
      else if (ev.type === "end") { entry.ended = true; es.close(); }
      renderCalls();
    };
    ["snapshot", "verification", "call", "capture", "approval", "end"].forEach((name) => es.addEventListener(name, onEvent));
  }
  // Capture events carry masked progress ({field, count, dots, brand}), a masked result
  // ({field, valid, brand, last_digits}) or the outcome ({result: captured|cancelled|...}).
  function onCapture(entry, data) {
    if (data.stage === "evidence") {  // talk-through: what the media relay masked and leaked
      entry.evidence = { masked: data.tones_masked || 0, leaked: data.leaked || 0 };
      return;
    }
    entry.error = "";
    if (data.capture_id) { entry.captureId = data.capture_id; }
    entry.summary = SUMMARY.onEvent(entry.summary, data);
    if (data.stage === "requested") { entry.outcome = null; }  // also a re-opened capture
    if (data.field !== undefined && data.count !== undefined) {
      entry.progress = { field: data.field, dots: data.dots || "•".repeat(data.count), brand: data.brand || "" };
    }
    if (data.valid !== undefined) { entry.progress = null; }
    if (data.result) { entry.outcome = data.result; entry.storedAs = data.stored_as || ""; entry.progress = null; }
  }
  // Approval events: {approval_id, stage, result: approved|declined|failed}; never a code.
  function onApproval(entry, data) {
    if (data.approval_id) { entry.approvalId = data.approval_id; }
    entry.approval = data.stage === "finished" ? data.result : "pending";
  }
  async function requestApproval(id, form) {
    const entry = state.calls.get(id);
    entry.error = ""; entry.approval = "pending";
    const body = { amount: form.amount.value.trim(), currency: form.currency.value,
                   payee: form.payee.value.trim() };
    const res = await api("POST", "/api/v1/calls/" + encodeURIComponent(id) + "/approvals", body);
    if (res.ok) { entry.approvalId = res.data.approval_id; }
    else { entry.approval = null; entry.error = errorText(res.data); }
    renderCalls();
  }
  async function requestCapture(id, kind) {
    const entry = state.calls.get(id);
    entry.error = ""; entry.outcome = null; entry.evidence = null;
    entry.summary = SUMMARY.create(null, FIELDS[kind]);
    const res = await api("POST", "/api/v1/calls/" + encodeURIComponent(id) + "/captures", { fields: FIELDS[kind] });
    if (res.ok) { entry.captureId = res.data.capture_id; entry.summary.captureId = res.data.capture_id; }
    else { entry.error = errorText(res.data); entry.summary = null; }
    renderCalls();
  }
  // Re-request, cancel or skip one field of the running capture (the flow answers on SSE).
  async function controlField(id, field, action) {
    const entry = state.calls.get(id);
    if (!entry || !entry.captureId) { return; }
    const res = await api("POST", "/api/v1/calls/" + encodeURIComponent(id) + "/captures/" +
                          encodeURIComponent(entry.captureId) + "/fields/" + encodeURIComponent(field),
                          { action });
    entry.error = res.ok ? "" : errorText(res.data);
    renderCalls();
  }
  // The summary card stays after the capture until the agent dismisses it.
  function dismissSummary(id) {
    const entry = state.calls.get(id);
    if (!entry) { return; }
    entry.summary = null; entry.evidence = null; entry.outcome = null; entry.error = "";
    renderCalls();
  }
  async function cancelCapture(id) {
    const entry = state.calls.get(id);
    if (!entry || !entry.captureId) { return; }
    const res = await api("DELETE", "/api/v1/calls/" + encodeURIComponent(id) + "/captures/" +
                          encodeURIComponent(entry.captureId));
    if (res.ok) { entry.outcome = "cancelled"; entry.progress = null; entry.captureId = null; }
    else { entry.error = errorText(res.data); }
    renderCalls();
  }

  // -- rendering ------------------------------------------------------------------------
  function badge(result) {
    const key = result ? "verification." + result : "verification.none";
    const known = t(key) !== key;
    return { text: known ? t(key) : t("verification.other"),
             cls: result === "verified" ? "ok" : result ? "bad" : "pending" };
  }
  function renderCall(li, id, entry) {
    const info = entry.info || {};
    li.dataset.callId = id;
    li.querySelector(".caller").textContent = info.caller || t("unknownCaller");
    const b = badge(info.verification);
    const badgeEl = li.querySelector(".badge");
    badgeEl.textContent = b.text;
    badgeEl.className = "badge " + b.cls;
    li.querySelector(".state").textContent = entry.ended ? t("ended") : (info.state || "");
    const fraud = li.querySelector(".fraud");
    const warned = !!entry.fraud || info.verification === "denied";
    fraud.textContent = warned ? t("fraudWarning") : "";
    fraud.classList.toggle("hidden", !warned);
    li.querySelector(".agent").textContent = info.agent ? t("agent") + " " + (info.agent_user || info.agent) : "";
    const busy = !!entry.captureId && !entry.outcome;
    li.querySelectorAll("button.capture").forEach((btn) => { btn.disabled = busy || entry.ended; });
    li.querySelector("button.cancel").classList.toggle("hidden", !busy);
    const p = entry.progress;
    const asking = p ? p.field : busy && entry.summary ? entry.summary.asking : null;
    li.querySelector(".field-name").textContent = asking ? t("field." + asking) : "";
    li.querySelector(".dots").textContent = p ? p.dots : "";
    li.querySelector(".brand").textContent = p && p.brand ? p.brand.toUpperCase() : "";
    SUMMARY.render(li.querySelector(".result"), entry.summary, t, busy,
                   (field, action) => controlField(id, field, action));
    li.querySelector("button.dismiss").classList.toggle("hidden", !entry.summary || busy);
    const customer = info.customer;  // the verified customer, for the agent handling the call
    li.querySelector(".customer").textContent = customer && customer.name ? customer.name +
      (customer.method ? " · " + t("method." + customer.method) : "") : "";
    const ev = entry.evidence;
    const evidence = li.querySelector(".evidence");
    evidence.textContent = ev ? t("tonesMasked") + ": " + ev.masked + ", " + t("tonesLeaked") + ": " + ev.leaked : "";
    evidence.className = "evidence " + (ev ? (ev.leaked === 0 ? "ok" : "bad") : "");
    li.querySelector(".call-error").textContent = entry.error || "";
    const approval = li.querySelector(".approval-status");
    approval.textContent = entry.approval ? t("approval." + entry.approval) : "";
    approval.className = "approval-status " + (entry.approval === "approved" ? "ok" :
      entry.approval && entry.approval !== "pending" ? "bad" : "");
    li.querySelector("button.approve").disabled = entry.ended || entry.approval === "pending" || busy;
  }
  function renderCalls() {
    const list = $("calls");
    const template = $("call-template");
    const items = new Map(Array.from(list.children).map((li) => [li.dataset.callId, li]));
    state.calls.forEach((entry, id) => {
      let li = items.get(id);
      if (!li) {
        li = template.content.firstElementChild.cloneNode(true);
        li.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
        li.querySelectorAll("button.capture").forEach((btn) =>
          btn.addEventListener("click", () => requestCapture(id, btn.dataset.kind)));
        li.querySelector("button.cancel").addEventListener("click", () => cancelCapture(id));
        li.querySelector("button.dismiss").addEventListener("click", () => dismissSummary(id));
        li.querySelector("form.approval").addEventListener("submit", (ev) => {
          ev.preventDefault(); requestApproval(id, ev.target);
        });
        li.querySelectorAll("[data-i18n-label]").forEach((el) => {
          el.setAttribute("aria-label", t(el.dataset.i18nLabel));
          if (!el.placeholder) { el.placeholder = t(el.dataset.i18nLabel); }
        });
        list.appendChild(li);
      }
      li.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
      renderCall(li, id, entry);
      items.delete(id);
    });
    items.forEach((li) => li.remove());
    $("no-calls").classList.toggle("hidden", state.calls.size > 0);
  }
  async function refreshAudit(path, background) {
    const res = await api("GET", path + "?limit=50" + (state.auditSince ? "&since=" + state.auditSince : ""),
                          undefined, background);
    if (res.status === 401) { stop(); showLogin(); return; }
    if (!res.ok) { return; }
    const body = $("audit-rows");
    res.data.entries.forEach((e) => {
      const tr = document.createElement("tr");
      [String(e.seq), new Date(e.ts).toLocaleTimeString(state.lang), e.actor, e.action, e.target]
        .forEach((text) => { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); });
      body.insertBefore(tr, body.firstChild);
    });
    while (body.children.length > 50) { body.removeChild(body.lastChild); }
    if (res.data.last_seq) { state.auditSince = res.data.last_seq; }
  }

  document.addEventListener("DOMContentLoaded", () => {
    initLanguage();
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", logout);
    start();
  });
})();

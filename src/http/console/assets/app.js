// raftkms console: signs every call with TC3-HMAC-SHA256 in the browser (WebCrypto) and renders
// the answers. The SecretKey lives only in this page's memory; a reload asks for it again.
"use strict";

const session = { secretId: "", secretKey: "", region: "" };
const enc = (s) => new TextEncoder().encode(s);
const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");

async function sha256hex(text) {
  return hex(await crypto.subtle.digest("SHA-256", enc(text)));
}

async function hmac(key, text) {
  const k = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, enc(text)));
}

class ApiError extends Error {
  constructor(code, message, requestId) {
    super(code + ": " + message);
    this.code = code;
    this.requestId = requestId;
  }
}

// One API call. Unlike the Tencent SDK, the console also signs the action and the region, so a
// captured request cannot be replayed as another action (and nodes that require those headers
// signed, [auth] require-signed-headers, accept it).
async function call(action, params, service = "kms", version = "2019-01-18") {
  const body = JSON.stringify(params || {});
  const ts = Math.floor(Date.now() / 1000);
  const date = new Date(ts * 1000).toISOString().slice(0, 10);
  const signed = [["content-type", "application/json"], ["host", location.host], ["x-tc-action", action]];
  if (session.region) signed.push(["x-tc-region", session.region]);
  const names = signed.map(([n]) => n).join(";");
  const canonical = ["POST", "/", "", signed.map(([n, v]) => n + ":" + v + "\n").join(""),
    names, await sha256hex(body)].join("\n");
  const scope = date + "/" + service + "/tc3_request";
  const toSign = ["TC3-HMAC-SHA256", String(ts), scope, await sha256hex(canonical)].join("\n");
  let k = await hmac(enc("TC3" + session.secretKey), date);
  k = await hmac(k, service);
  k = await hmac(k, "tc3_request");
  const signature = hex(await hmac(k, toSign));
  const headers = {
    "Content-Type": "application/json",
    "X-TC-Action": action,
    "X-TC-Version": version,
    "X-TC-Timestamp": String(ts),
    "Authorization": "TC3-HMAC-SHA256 Credential=" + session.secretId + "/" + scope +
      ", SignedHeaders=" + names + ", Signature=" + signature,
  };
  if (session.region) headers["X-TC-Region"] = session.region;
  const resp = await fetch("/", { method: "POST", headers, body, credentials: "omit" });
  let doc;
  try {
    doc = await resp.json();
  } catch (e) {
    throw new ApiError("HTTP" + resp.status, "the node answered HTTP " + resp.status + " without an API envelope");
  }
  const r = doc.Response || {};
  if (r.Error) throw new ApiError(r.Error.Code, r.Error.Message, r.RequestId);
  return r;
}

// --- small DOM helpers (text only: nothing an answer holds is parsed as HTML) -------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

// Each navigation gets a number; a view renders only if no later navigation started meanwhile.
let navigation = 0;

function show(...children) {
  const main = document.getElementById("main");
  main.replaceChildren(...children.flat(Infinity));
  main.focus();
}

// The `show` of a view that loads asynchronously: it renders only if the user has not moved on
// (or signed out) while the view was loading.
function viewShow() {
  const mine = navigation;
  return (...children) => { if (mine === navigation) show(...children); };
}

function say(text, bad) {
  const s = document.getElementById("status");
  s.className = bad ? "error" : "ok";
  s.textContent = text;
}

function errorBox(e) {
  return el("p", { class: "error", role: "alert", "data-code": e.code || "" },
    e.code ? e.code + ": " + e.message.replace(e.code + ": ", "") : String(e));
}

const when = (secs) => (secs ? new Date(secs * 1000).toISOString().replace(".000Z", "Z") : "—");

// --- views ----------------------------------------------------------------------------------------

function signIn(message) {
  navigation += 1;
  document.getElementById("nav").hidden = true;
  const form = el("form", { id: "signin", "aria-label": "Sign in" },
    el("label", {}, "SecretId", el("input", { id: "secret-id", name: "secret-id", autocomplete: "off", spellcheck: "false", autocapitalize: "off", required: "" })),
    el("label", {}, "SecretKey", el("input", { id: "secret-key", name: "secret-key", type: "password", autocomplete: "off", spellcheck: "false", autocapitalize: "off", required: "" })),
    el("label", {}, "Region (empty: the node's own)", el("input", { id: "region", name: "region" })),
    el("button", { type: "submit", id: "signin-button" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    session.secretId = form.querySelector("#secret-id").value.trim();
    session.secretKey = form.querySelector("#secret-key").value;
    session.region = form.querySelector("#region").value.trim();
    try {
      await call("GetServiceStatus", {});
    } catch (e) {
      // A valid credential without the permission is signed in; anything else is not.
      if (!(e instanceof ApiError) || !/^(UnauthorizedOperation|AuthFailure\.UnauthorizedOperation)$/.test(e.code)) {
        session.secretKey = "";
        return signIn(e);
      }
    }
    document.getElementById("nav").hidden = false;
    document.getElementById("who").textContent = session.secretId;
    if (!location.hash.startsWith("#/") || location.hash === "#/signin") {
      history.replaceState(null, "", "#/keys");
    }
    route(location.hash);
  });
  show(el("h2", {}, "Sign in"),
    el("p", {}, "Sign in with an API credential (the SecretId and SecretKey of an account or a sub-user). " +
      "The key stays in this page; every request is signed here and checked by the node as any SDK call is."),
    message ? errorBox(message) : null, form);
}

const STATES = ["", "Enabled", "Disabled", "PendingDelete", "PendingImport", "Archived"];
const STATE_FILTER = { Enabled: 1, Disabled: 2, PendingDelete: 3, PendingImport: 4, Archived: 5 };

async function keysView(query) {
  const show = viewShow();
  const state = query.get("state") || "";
  const alias = query.get("alias") || "";
  const filters = el("form", { id: "filters", "aria-label": "Filter keys" },
    el("label", {}, "State", el("select", { id: "filter-state", name: "state" },
      STATES.map((s) => el("option", s === state ? { value: s, selected: "" } : { value: s }, s || "any")))),
    el("label", {}, "Alias or KeyId contains", el("input", { id: "filter-alias", name: "alias", value: alias })),
    el("button", { type: "submit" }, "Filter"));
  filters.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    const s = filters.querySelector("#filter-state").value;
    const a = filters.querySelector("#filter-alias").value.trim();
    if (s) q.set("state", s);
    if (a) q.set("alias", a);
    location.hash = "#/keys" + (q.toString() ? "?" + q : "");
  });
  const create = el("form", { id: "create", "aria-label": "Create a key" },
    el("label", {}, "Alias", el("input", { id: "new-alias", name: "alias", required: "" })),
    el("label", {}, "Description", el("input", { id: "new-description", name: "description" })),
    el("button", { type: "submit", id: "create-button" }, "Create key"));
  create.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const k = await call("CreateKey", {
        Alias: create.querySelector("#new-alias").value.trim(),
        Description: create.querySelector("#new-description").value,
      });
      say("created " + k.KeyId);
      route(location.hash);
    } catch (e) { say(e.message, true); }
  });
  const params = { Offset: 0, Limit: 200, KeyUsage: "ALL" };
  if (state) params.KeyState = STATE_FILTER[state];
  if (alias) params.SearchKeyAlias = alias;
  let table;
  try {
    const r = await call("ListKeyDetail", params);
    const rows = (r.KeyMetadatas || []).map((m) => el("tr", { "data-key-id": m.KeyId },
      el("td", {}, el("a", { href: "#/keys/" + encodeURIComponent(m.KeyId) }, m.Alias)),
      el("td", {}, m.KeyId),
      el("td", { class: "state-" + m.KeyState }, m.KeyState),
      el("td", {}, m.KeyUsage),
      el("td", {}, m.Origin),
      el("td", {}, when(m.CreateTime)),
      el("td", {}, stateButton(m))));
    table = el("table", { id: "keys" },
      el("caption", {}, (r.TotalCount || 0) + " keys" + ((r.TotalCount || 0) > rows.length ? " (newest " + rows.length + " shown)" : "")),
      el("thead", {}, el("tr", {}, ["Alias", "KeyId", "State", "Usage", "Origin", "Created", ""].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows));
  } catch (e) { table = errorBox(e); }
  show(el("h2", {}, "Keys"), filters, create, table);
}

function stateButton(m) {
  if (m.KeyState !== "Enabled" && m.KeyState !== "Disabled") return null;
  const enable = m.KeyState === "Disabled";
  return el("button", {
    type: "button", class: enable ? "enable" : "disable", "data-key-id": m.KeyId,
    onclick: async () => {
      try {
        await call(enable ? "EnableKey" : "DisableKey", { KeyId: m.KeyId });
        say((enable ? "enabled " : "disabled ") + m.KeyId);
        route(location.hash);
      } catch (e) { say(e.message, true); }
    },
  }, enable ? "Enable" : "Disable");
}

async function keyView(keyId) {
  const show = viewShow();
  let parts = [el("h2", {}, "Key " + keyId), el("p", {}, el("a", { href: "#/keys" }, "All keys"))];
  try {
    const m = (await call("DescribeKey", { KeyId: keyId })).KeyMetadata;
    const facts = [["Alias", m.Alias], ["KeyId", m.KeyId], ["State", m.KeyState], ["Usage", m.KeyUsage],
      ["Origin", m.Origin], ["Description", m.Description], ["Created", when(m.CreateTime)],
      ["Rotation", m.KeyRotationEnabled ? "on, every " + m.RotateDays + " days" : "off"],
      ["Last rotated", when(m.LastRotateTime)], ["Deletion date", when(m.DeletionDate)],
      ["Replica of region", m.IsSyncReplica ? m.SourceRegion : "—"], ["Owner", m.Owner]];
    parts.push(el("dl", { id: "key-facts" }, facts.map(([k, v]) => [el("dt", {}, k), el("dd", { "data-fact": k }, v)])));
    const actions = el("div", { id: "key-actions" }, stateButton(m),
      m.KeyState === "Enabled" && m.KeyUsage === "ENCRYPT_DECRYPT" && m.Origin === "TENCENT_KMS" ? el("button", { type: "button", id: "rotate", onclick: () => act("RotateKey", { KeyId: keyId }) }, "Rotate now") : null,
      m.KeyState === "Disabled" ? el("button", { type: "button", id: "schedule-deletion", onclick: () => act("ScheduleKeyDeletion", { KeyId: keyId, PendingWindowInDays: 7 }) }, "Schedule deletion (7 days)") : null,
      m.KeyState === "PendingDelete" ? el("button", { type: "button", id: "cancel-deletion", onclick: () => act("CancelKeyDeletion", { KeyId: keyId }) }, "Cancel deletion") : null);
    parts.push(actions);
  } catch (e) { parts.push(errorBox(e)); }
  parts.push(el("h3", {}, "Audit events of this key (the newest 50 of the last 7 days)"), await auditTable({ key: keyId, hours: 168 }));
  show(parts);
}

async function act(action, params) {
  try {
    await call(action, params);
    say(action + " done");
    route(location.hash);
  } catch (e) { say(e.message, true); }
}

async function auditTable(q) {
  const now = Math.floor(Date.now() / 1000);
  const attrs = [];
  if (q.key) attrs.push({ AttributeKey: "ResourceId", AttributeValue: q.key });
  if (q.caller) attrs.push({ AttributeKey: "AccessKeyId", AttributeValue: q.caller });
  if (q.action) attrs.push({ AttributeKey: "EventName", AttributeValue: q.action });
  if (q.result) attrs.push({ AttributeKey: "ApiErrorCode", AttributeValue: q.result });
  const hours = Number(q.hours || 24);
  try {
    const r = await call("LookUpEvents", {
      StartTime: now - hours * 3600, EndTime: now + 60, LookupAttributes: attrs, MaxResults: 50,
    }, "cloudaudit", "2019-03-19");
    const result = (ev) => {
      try { return JSON.parse(ev.CloudAuditEvent).result; } catch (e) { return String(ev.ErrorCode); }
    };
    const rows = (r.Events || []).map((ev) => el("tr", { "data-event-name": ev.EventName, "data-key-id": ev.Resources ? ev.Resources.ResourceName : "" },
      el("td", {}, when(Number(ev.EventTime))), el("td", {}, ev.EventName), el("td", {}, ev.Username),
      el("td", {}, ev.SecretId), el("td", {}, ev.Resources ? ev.Resources.ResourceName : ""),
      el("td", {}, result(ev)), el("td", {}, ev.RequestID)));
    return el("table", { class: "audit" },
      el("thead", {}, el("tr", {}, ["Time", "Action", "Caller", "SecretId", "Key", "Result", "RequestId"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows));
  } catch (e) { return errorBox(e); }
}

async function auditView(query) {
  const show = viewShow();
  const fields = [["hours", "Last hours", query.get("hours") || "24"], ["caller", "Caller SecretId", query.get("caller") || ""],
    ["key", "KeyId", query.get("key") || ""], ["action", "Action (e.g. Encrypt)", query.get("action") || ""],
    ["result", "Result code", query.get("result") || ""]];
  const form = el("form", { id: "audit-search", "aria-label": "Search the audit trail" },
    fields.map(([n, label, v]) => el("label", {}, label, el("input", { id: "audit-" + n, name: n, value: v }))),
    el("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [n] of fields) {
      const v = form.querySelector("#audit-" + n).value.trim();
      if (v) q.set(n, v);
    }
    location.hash = "#/audit?" + q;
  });
  const q = Object.fromEntries(query.entries());
  show(el("h2", {}, "Audit trail (the newest 50 matching events)"), form, await auditTable(q));
}

// --- routing: every view has a URL that can be bookmarked and shared ------------------------------

async function route(hash) {
  // In-page anchors (the skip link) are not views.
  if (hash && !hash.startsWith("#/")) return;
  if (!session.secretKey) return signIn();
  navigation += 1;
  const [path, qs] = (hash || "#/keys").slice(1).split("?");
  const query = new URLSearchParams(qs || "");
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "keys" && parts[1]) {
    let id;
    try { id = decodeURIComponent(parts[1]); } catch (e) { return show(errorBox(new ApiError("InvalidURL", "not a KeyId: " + parts[1]))); }
    return keyView(id);
  }
  if (parts[0] === "audit") return auditView(query);
  return keysView(query);
}

window.addEventListener("hashchange", () => route(location.hash));
window.addEventListener("DOMContentLoaded", () => {
  document.getElementById("signout").addEventListener("click", () => {
    // A reload drops the key and any view still loading.
    session.secretKey = "";
    session.secretId = "";
    location.replace("#/signin");
    location.reload();
  });
  route(location.hash);
});

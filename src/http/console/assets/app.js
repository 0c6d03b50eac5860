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
// The region of the view on screen (`?region=` in its URL), else the session's.
let viewRegion = "";

async function call(action, params, service = "kms", version = "2019-01-18", region = viewRegion || session.region) {
  const body = JSON.stringify(params || {});
  const ts = Math.floor(Date.now() / 1000);
  const date = new Date(ts * 1000).toISOString().slice(0, 10);
  const signed = [["content-type", "application/json"], ["host", location.host], ["x-tc-action", action]];
  if (region) signed.push(["x-tc-region", region]);
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
  if (region) headers["X-TC-Region"] = region;
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

// A table in a region of its own that scrolls sideways when the window is narrow (200 % zoom),
// so that the rest of the page reflows; focusable, so that the keyboard can scroll it.
function wide(label, table) {
  return el("div", { class: "wide", role: "region", tabindex: "0", "aria-label": label }, table);
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
const ORIGINS = ["", "TENCENT_KMS", "EXTERNAL"];
const USAGES = ["ALL", "ENCRYPT_DECRYPT", "ASYMMETRIC_DECRYPT_RSA_2048", "ASYMMETRIC_DECRYPT_SM2",
  "ASYMMETRIC_SIGN_VERIFY_SM2", "ASYMMETRIC_SIGN_VERIFY_ECC", "ASYMMETRIC_SIGN_VERIFY_RSA_2048",
  "ASYMMETRIC_SIGN_VERIFY_ECDSA384", "ASYMMETRIC_SIGN_VERIFY_RSA_3072", "ASYMMETRIC_SIGN_VERIFY_RSA_4096",
  "ASYMMETRIC_SIGN_VERIFY_SECP256K1", "ASYMMETRIC_SIGN_VERIFY_DILITHIUM", "ASYMMETRIC_Encrypt_Decrypt_Kyber_AES"];
const PAGE = 50;

// A select of `values` (the empty value reads `emptyLabel`), `current` selected.
function select(id, name, values, current, emptyLabel) {
  return el("select", { id, name },
    values.map((v) => el("option", v === current ? { value: v, selected: "" } : { value: v }, v || emptyLabel)));
}

async function keysView(query) {
  const show = viewShow();
  const q = (n) => query.get(n) || "";
  const state = q("state"), alias = q("alias"), origin = q("origin"), usage = q("usage") || "ALL";
  const tag = q("tag"), region = q("region");
  const page = Math.max(0, Math.floor(Number(q("page")) || 0));
  const filters = el("form", { id: "filters", "aria-label": "Filter keys" },
    el("label", {}, "State", select("filter-state", "state", STATES, state, "any")),
    el("label", {}, "Origin", select("filter-origin", "origin", ORIGINS, origin, "any")),
    el("label", {}, "Usage", select("filter-usage", "usage", USAGES, usage, "")),
    el("label", {}, "Alias or KeyId contains", el("input", { id: "filter-alias", name: "alias", value: alias })),
    el("label", {}, "Tag (key=value)", el("input", { id: "filter-tag", name: "tag", value: tag })),
    el("label", {}, "Region (empty: the session's)", el("input", { id: "filter-region", name: "region", value: region })),
    el("button", { type: "submit" }, "Filter"));
  filters.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const out = new URLSearchParams();
    for (const n of ["state", "origin", "usage", "alias", "tag", "region"]) {
      const v = filters.querySelector("#filter-" + n).value.trim();
      if (v && !(n === "usage" && v === "ALL")) out.set(n, v);
    }
    location.hash = "#/keys" + (out.toString() ? "?" + out : "");
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
  const params = { Offset: page * PAGE, Limit: PAGE, KeyUsage: usage };
  if (state) params.KeyState = STATE_FILTER[state];
  if (alias) params.SearchKeyAlias = alias;
  if (origin) params.Origin = origin;
  if (tag) {
    const [k, ...v] = tag.split("=");
    params.TagFilters = [{ TagKey: k, TagValue: v.length ? [v.join("=")] : [] }];
  }
  let table;
  try {
    const r = await call("ListKeyDetail", params);
    const rows = (r.KeyMetadatas || []).map((m) => el("tr", { "data-key-id": m.KeyId },
      el("td", {}, el("a", { href: "#/keys/" + encodeURIComponent(m.KeyId) + (region ? "?region=" + encodeURIComponent(region) : "") }, m.Alias)),
      el("td", {}, m.KeyId),
      el("td", { class: "state-" + m.KeyState }, m.KeyState),
      el("td", {}, m.KeyUsage),
      el("td", {}, m.Origin),
      el("td", {}, when(m.CreateTime)),
      el("td", {}, stateButton(m))));
    const total = r.TotalCount || 0;
    const first = total ? page * PAGE + 1 : 0;
    const pageLink = (p, text, id) => {
      const next = new URLSearchParams(query);
      if (p) next.set("page", String(p)); else next.delete("page");
      return el("a", { href: "#/keys?" + next, id, rel: id }, text);
    };
    table = [wide("Keys", el("table", { id: "keys" },
      el("caption", {}, total + " keys" + (total ? " (" + first + "–" + (page * PAGE + rows.length) + " shown, newest first)" : "")),
      el("thead", {}, el("tr", {}, ["Alias", "KeyId", "State", "Usage", "Origin", "Created", ""].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows))),
    el("nav", { class: "pages", "aria-label": "Pages" },
      page > 0 ? pageLink(page - 1, "← Newer", "prev") : null,
      (page + 1) * PAGE < total ? pageLink(page + 1, "Older →", "next") : null)];
  } catch (e) { table = errorBox(e); }
  show(el("h2", {}, "Keys"), filters, create, table);
}

// Runs `action` after the user confirmed `question` (destructive or disruptive steps only).
function confirmed(question) {
  return window.confirm(question);
}

function stateButton(m) {
  if (m.KeyState !== "Enabled" && m.KeyState !== "Disabled") return null;
  const enable = m.KeyState === "Disabled";
  return el("button", {
    type: "button", class: enable ? "enable" : "disable", "data-key-id": m.KeyId,
    onclick: async () => {
      if (!enable && !confirmed("Disable " + m.KeyId + "? Every Encrypt and Decrypt under it is refused at once, on every node.")) return;
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
  let parts = [el("h2", {}, "Key " + keyId + (viewRegion ? " (" + viewRegion + ")" : "")),
    el("p", {}, el("a", { href: "#/keys" + (viewRegion ? "?region=" + encodeURIComponent(viewRegion) : "") }, "All keys"))];
  try {
    const m = (await call("DescribeKey", { KeyId: keyId })).KeyMetadata;
    const facts = [["Alias", m.Alias], ["KeyId", m.KeyId], ["State", m.KeyState], ["Usage", m.KeyUsage],
      ["Origin", m.Origin], ["Description", m.Description], ["Created", when(m.CreateTime)],
      ["Rotation", m.KeyRotationEnabled ? "on, every " + m.RotateDays + " days" : "off"],
      ["Last rotated", when(m.LastRotateTime)], ["Deletion date", when(m.DeletionDate)],
      ["Replica of region", m.IsSyncReplica ? m.SourceRegion : "—"], ["Owner", m.Owner]];
    parts.push(el("dl", { id: "key-facts" }, facts.map(([k, v]) => [el("dt", {}, k), el("dd", { "data-fact": k }, v)])));
    const actions = el("div", { id: "key-actions" }, stateButton(m),
      m.KeyState === "Enabled" && m.KeyUsage === "ENCRYPT_DECRYPT" && m.Origin === "TENCENT_KMS" ? el("button", { type: "button", id: "rotate", onclick: () => confirmed("Rotate " + keyId + " now? New ciphertexts use new material; old ones still decrypt.") && act("RotateKey", { KeyId: keyId }) }, "Rotate now") : null,
      m.KeyState === "Disabled" ? el("button", { type: "button", id: "schedule-deletion", onclick: () => confirmed("Schedule " + keyId + " for deletion in 7 days? After that, nothing encrypted under it can be decrypted.") && act("ScheduleKeyDeletion", { KeyId: keyId, PendingWindowInDays: 7 }) }, "Schedule deletion (7 days)") : null,
      m.KeyState === "PendingDelete" ? el("button", { type: "button", id: "cancel-deletion", onclick: () => act("CancelKeyDeletion", { KeyId: keyId }) }, "Cancel deletion") : null);
    parts.push(actions);
    // The alias and the description, changed where they are shown (each only if it changed).
    const edit = el("form", { id: "edit-key", "aria-label": "Alias and description" },
      el("label", {}, "Alias", el("input", { id: "edit-alias", name: "alias", value: m.Alias, required: "" })),
      el("label", {}, "Description", el("input", { id: "edit-description", name: "description", value: m.Description })),
      el("button", { type: "submit", id: "save-key" }, "Save"));
    edit.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const alias = edit.querySelector("#edit-alias").value.trim();
      const description = edit.querySelector("#edit-description").value;
      try {
        if (alias !== m.Alias) await call("UpdateAlias", { KeyId: keyId, Alias: alias });
        if (description !== m.Description) await call("UpdateKeyDescription", { KeyId: keyId, Description: description });
        say("saved " + keyId);
        route(location.hash);
      } catch (e) { say(e.message, true); }
    });
    parts.push(edit);
    parts.push(await keyDetails(keyId));
  } catch (e) { parts.push(errorBox(e)); }
  parts.push(el("h3", {}, "Rotations requested through the API (RotateKey, the last 30 days; every version is listed above)"),
    await auditTable({ key: keyId, action: "RotateKey", hours: 720 }, undefined, "rotations"));
  parts.push(el("h3", {}, "Audit events of this key (the last 7 days, newest first)"), await auditTable({ key: keyId, hours: 168 }));
  show(parts);
}

// The key's versions, regions and bindings (GetKeyDetails), and its rotations from the trail.
async function keyDetails(keyId) {
  try {
    const d = await call("GetKeyDetails", { KeyId: keyId });
    const list = (id, items, empty) => (items.length ? el("ul", { id }, items.map((i) => el("li", {}, i))) : el("p", { id }, empty));
    return el("section", { id: "key-details" },
      el("h3", {}, "Material versions (newest first)"),
      list("key-versions", (d.Versions || []).map((v) => "version " + v.Version + ", created " + when(v.CreateTime)), "none (no material yet)"),
      el("h3", {}, "Regions"),
      d.PrimaryRegion ? el("p", { id: "key-regions" }, "primary in " + d.PrimaryRegion + "; replicas in " + ((d.ReplicaRegions || []).join(", ") || "—"))
        : el("p", { id: "key-regions" }, "single-region key"),
      el("h3", {}, "Cloud resources bound to it"),
      list("key-bindings", (d.Bindings || []).map((b) => b.ProductId + ": " + b.ResourceId), "none"));
  } catch (e) { return errorBox(e); }
}

async function act(action, params) {
  try {
    await call(action, params);
    say(action + " done");
    route(location.hash);
  } catch (e) { say(e.message, true); }
}

async function auditTable(q, token, id) {
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
      NextToken: token || undefined,
    }, "cloudaudit", "2019-03-19");
    const result = (ev) => {
      try { return JSON.parse(ev.CloudAuditEvent).result; } catch (e) { return String(ev.ErrorCode); }
    };
    const rows = (r.Events || []).map((ev) => el("tr", { "data-event-name": ev.EventName, "data-key-id": ev.Resources ? ev.Resources.ResourceName : "" },
      el("td", {}, when(Number(ev.EventTime))), el("td", {}, ev.EventName), el("td", {}, ev.Username),
      el("td", {}, ev.SecretId), el("td", {}, ev.Resources ? ev.Resources.ResourceName : ""),
      el("td", {}, result(ev)), el("td", {}, ev.RequestID)));
    const table = wide("Audit events", el("table", { class: "audit", id },
      el("thead", {}, el("tr", {}, ["Time", "Action", "Caller", "SecretId", "Key", "Result", "RequestId"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows)));
    if (r.ListOver || !r.NextToken) return table;
    // Older events: the next page replaces the button, below the rows already shown.
    const more = el("button", { type: "button", class: "older-events" }, "Older events");
    more.addEventListener("click", async () => {
      more.disabled = true;
      const next = await auditTable(q, r.NextToken, id ? id + "-more" : undefined);
      more.replaceWith(next);
    });
    return el("div", {}, table, more);
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
  show(el("h2", {}, "Audit trail (newest first, 50 at a time)"), form, await auditTable(q));
}

// --- cluster: every member's status, a region map and live charts of each node's API traffic ----

const SVG = "http://www.w3.org/2000/svg";
const history_ = new Map(); // node id -> [{t, requests, micros, buckets}], newest last
const SAMPLES = 60;
const POLL_MS = 2000;

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// Per interval between two samples: requests per second, mean and p99 latency (ms, from the
// latency buckets' deltas: the upper bound of the bucket holding the 99th percentile).
function rates(samples, boundsMs) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1], b = samples[i];
    const dt = (b.t - a.t) / 1000, n = b.requests - a.requests;
    if (dt <= 0 || n < 0) continue;
    let p99 = 0;
    if (n > 0) {
      let seen = 0;
      for (let j = 0; j < b.buckets.length; j++) {
        seen += b.buckets[j] - (a.buckets[j] || 0);
        if (seen >= 0.99 * n) { p99 = j < boundsMs.length ? boundsMs[j] : 2 * boundsMs[boundsMs.length - 1]; break; }
      }
    }
    out.push({ rate: n / dt, mean: n > 0 ? (b.micros - a.micros) / n / 1000 : 0, p99 });
  }
  return out;
}

// A small line chart of `values` with its latest value; `label` says what it is for screen readers.
function spark(values, label, unit) {
  const w = 160, h = 36;
  // One interval so far: a flat line at its value.
  if (values.length === 1) values = [values[0], values[0]];
  const max = Math.max(1e-9, ...values);
  const pts = values.map((v, i) => ((values.length > 1 ? i / (values.length - 1) : 1) * (w - 2) + 1).toFixed(1) + "," + (h - 2 - (v / max) * (h - 6)).toFixed(1)).join(" ");
  const last = values.length ? values[values.length - 1] : 0;
  const text = last >= 100 ? last.toFixed(0) : last.toFixed(last >= 10 ? 1 : 2);
  return el("figure", { class: "spark" },
    svg("svg", { viewBox: "0 0 " + w + " " + h, width: w, height: h, role: "img", "aria-label": label + ": " + text + " " + unit },
      svg("polyline", { points: pts || "", fill: "none", stroke: "currentColor", "stroke-width": "1.5" })),
    el("figcaption", {}, label + " ", el("strong", {}, text), " " + unit));
}

const count = (n, noun) => n + " " + noun + (n === 1 ? "" : "s");

function regionMap(nodes, leader) {
  const regions = new Map();
  for (const n of nodes) {
    if (!regions.has(n.Region)) regions.set(n.Region, []);
    regions.get(n.Region).push(n);
  }
  return el("div", { id: "region-map", role: "list", "aria-label": "Regions" },
    [...regions.entries()].map(([region, members]) => el("section", { class: "region", role: "listitem", "data-region": region },
      el("h3", {}, region),
      el("p", {}, count(members.filter((m) => m.Role === "Voter").length, "voter") + ", " +
        count(members.filter((m) => m.Role !== "Voter").length, "learner")),
      el("ul", {}, members.map((m) => el("li", {
        class: ["member", m.Role === "Voter" ? "voter" : "learner", m.NodeId === leader ? "leader" : "",
          m.Reachable ? "" : "down"].join(" ").trim(),
        "data-node-id": m.NodeId,
      }, "node " + m.NodeId + (m.NodeId === leader ? " (leader)" : "") + (m.Reachable ? "" : " (unreachable)")))))));
}

function clusterBody(r) {
  const bounds = r.LatencyBucketBoundsMs || [];
  const now = Date.now();
  for (const n of r.Nodes || []) {
    if (!n.Reachable) continue;
    const h = history_.get(n.NodeId) || [];
    // A node that restarted counts from zero again: its history starts over.
    if (h.length && n.ApiRequests < h[h.length - 1].requests) h.length = 0;
    h.push({ t: now, requests: n.ApiRequests, micros: n.ApiLatencyMicros, buckets: n.ApiLatencyBuckets || [] });
    if (h.length > SAMPLES + 1) h.shift();
    history_.set(n.NodeId, h);
  }
  const leader = r.Leader;
  const fmt = (v) => (v === null || v === undefined ? "—" : String(v));
  const rows = (r.Nodes || []).map((n) => el("tr", {
    "data-node-id": n.NodeId, "data-state": n.State || "", "data-reachable": String(!!n.Reachable),
  },
    el("th", { scope: "row" }, String(n.NodeId) + (n.NodeId === r.ServedBy ? " (this node)" : "")),
    el("td", {}, n.Region), el("td", {}, n.Role),
    n.Reachable ? [
      el("td", { class: n.State === "Leader" ? "ok" : "" }, n.State), el("td", {}, fmt(n.Term)),
      el("td", {}, fmt(n.LastLogIndex)), el("td", {}, fmt(n.CommitIndex)), el("td", {}, fmt(n.AppliedIndex)),
      el("td", { class: n.LagEntries > 100 ? "error" : "" }, fmt(n.LagEntries)),
      el("td", {}, n.State === "Leader" ? "—" : n.LeaderContactMs === null ? "never" : n.LeaderContactMs + " ms"),
      el("td", { class: n.Ready ? "ok" : "error" }, n.Ready ? "ready" : "not ready"), el("td", {}, n.Release),
    ] : el("td", { colspan: "9", class: "error" }, "unreachable: " + n.Error)));
  const table = wide("Members", el("table", { id: "nodes" },
    el("caption", {}, "Members (as node " + r.ServedBy + " and each member report)"),
    el("thead", {}, el("tr", {}, ["Node", "Region", "Role", "State", "Term", "Last log", "Commit", "Applied", "Lag", "Leader contact", "Readiness", "Release"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows)));
  const charts = el("div", { id: "charts" }, (r.Nodes || []).map((n) => {
    const series = rates(history_.get(n.NodeId) || [], bounds);
    return el("section", { class: "node-charts", "data-node-id": n.NodeId },
      el("h3", {}, "Node " + n.NodeId),
      series.length ? [spark(series.map((x) => x.rate), "requests", "/s"), spark(series.map((x) => x.p99), "p99", "ms"),
        spark(series.map((x) => x.mean), "mean", "ms")] : el("p", {}, n.Reachable ? "collecting…" : "no data"));
  }));
  return [
    el("p", { id: "cluster-leader", "data-leader": leader === null || leader === undefined ? "" : String(leader) },
      leader === null || leader === undefined ? "No leader known" : "Leader: node " + leader + ", term " + r.Term),
    regionMap(r.Nodes || [], leader), table,
    el("h3", {}, "API requests per node (the last " + (SAMPLES * POLL_MS / 1000) + " s, every " + POLL_MS / 1000 + " s)"), charts];
}

async function clusterView() {
  const mine = navigation;
  const body = el("div", { id: "cluster", "aria-live": "off" }, el("p", {}, "Loading…"));
  show(el("h2", {}, "Cluster"), body);
  history_.clear();
  // Refreshes in place (no focus change) until the user moves on; not while the tab is hidden
  // (each refresh is an audited API call).
  while (mine === navigation) {
    if (document.visibilityState === "hidden") {
      await new Promise((res) => setTimeout(res, POLL_MS));
      continue;
    }
    try {
      const r = await call("DescribeClusterStatus", {});
      if (mine !== navigation) return;
      body.replaceChildren(...clusterBody(r).flat(Infinity));
    } catch (e) {
      if (mine !== navigation) return;
      body.replaceChildren(errorBox(e));
      if (e.code && /Unauthorized/.test(e.code)) return;
    }
    await new Promise((res) => setTimeout(res, POLL_MS));
  }
}

// --- DR: the drill reports, and on a dev cluster a drill started from here ---------------------

function drillRow(d) {
  const r = (d.Report && d.Report.report) || {};
  const ms = (v) => (v === null || v === undefined ? "—" : v + " ms");
  return el("tr", { "data-drill": d.Name, "data-passed": String(!!r.passed) },
    el("td", {}, r.started_at_ms ? new Date(r.started_at_ms).toISOString().replace(/\.\d+Z$/, "Z") : d.Name),
    el("td", {}, r.region || "?"),
    el("td", {}, (r.cut_nodes || []).join(", ") + (r.leader_was_in_region ? " (held the leader)" : "")),
    el("td", {}, r.quorum_survives ? ms(r.rto_ms) : "no quorum left"),
    el("td", {}, (r.lost === 0 ? "0" : String(r.lost)) + " lost of " + (r.keys_created || 0) + " keys, " +
      (r.ciphertexts || 0) + " ciphertexts, " + (r.writes_acknowledged_during_outage || 0) + " outage writes"),
    el("td", {}, ms(r.convergence_ms)),
    el("td", { class: r.passed ? "ok" : "error" }, r.passed ? "PASS" : "FAIL" + ((r.problems || []).length ? ": " + r.problems.join("; ") : "")));
}

async function drView() {
  const show = viewShow();
  const mine = navigation;
  let r;
  try { r = await call("DescribeDrillReports", {}); } catch (e) { return show(el("h2", {}, "Disaster recovery"), errorBox(e)); }
  const parts = [el("h2", {}, "Disaster recovery"),
    el("p", {}, "The newest DR drill reports: RTO (cut → first acknowledged write through the survivors), RPO (acknowledged writes and ciphertexts lost; must be 0) and the time until every node converged after the heal. Every run of raftkms drill stores its report here.")];
  if ((r.StartableRegions || []).length) {
    const form = el("form", { id: "drill-form", "aria-label": "Run a drill" },
      el("label", {}, "Region to cut off", select("drill-region", "region", r.StartableRegions, r.StartableRegions[0], "")),
      el("button", { type: "submit", id: "drill-button", disabled: r.Running ? "" : null }, r.Running ? "A drill is running…" : "Run a drill"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const region = form.querySelector("#drill-region").value;
      if (!confirmed("Run a DR drill? The nodes of " + region + " are frozen for several seconds on this dev machine.")) return;
      try {
        await call("StartDrill", { Region: region });
        say("drill started: cutting " + region + " off");
        route(location.hash);
      } catch (e) { say(e.message, true); }
    });
    parts.push(el("p", {}, "This is a dev cluster: a drill can be started here."), form);
  }
  const reports = r.Reports || [];
  parts.push(reports.length ? wide("Drill reports", el("table", { id: "drills" },
    el("thead", {}, el("tr", {}, ["Started", "Region cut", "Nodes cut", "RTO", "RPO", "Convergence", "Result"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, reports.map(drillRow)))) : el("p", { id: "no-drills" }, "No drill has reported yet. Run raftkms drill --region R against the cluster."));
  show(parts);
  // While a drill runs, look again until its report is in.
  if (r.Running) {
    await new Promise((res) => setTimeout(res, 3000));
    if (mine === navigation) route(location.hash);
  }
}

// --- routing: every view has a URL that can be bookmarked and shared ------------------------------

async function route(hash) {
  // In-page anchors (the skip link) are not views.
  if (hash && !hash.startsWith("#/")) return;
  if (!session.secretKey) return signIn();
  navigation += 1;
  const [path, qs] = (hash || "#/keys").slice(1).split("?");
  const query = new URLSearchParams(qs || "");
  viewRegion = query.get("region") || "";
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "keys" && parts[1]) {
    let id;
    try { id = decodeURIComponent(parts[1]); } catch (e) { return show(errorBox(new ApiError("InvalidURL", "not a KeyId: " + parts[1]))); }
    return keyView(id);
  }
  if (parts[0] === "audit") return auditView(query);
  if (parts[0] === "cluster") return clusterView();
  if (parts[0] === "dr") return drView();
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

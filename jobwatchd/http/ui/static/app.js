// The jobwatchd web view: fetches the API and renders with textContent only
// (labels, fail reasons and entities are untrusted text; never innerHTML).
"use strict";

const TOKEN_KEY = "jobwatchd.token";
const PAGE_SIZE = 100;
const ID_CHARS = /^[A-Za-z0-9_-]{1,64}$/;
const body = document.body;
const tokenRequired = body.dataset.tokenRequired === "true";

function token() {
  return tokenRequired ? sessionStorage.getItem(TOKEN_KEY) : null;
}

class Unauthorized extends Error {}

function headers(extra) {
  const result = Object.assign({ Accept: "application/json" }, extra || {});
  const current = token();
  if (current) result.Authorization = "Bearer " + current;
  return result;
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.headers);
  opts.credentials = "omit";
  opts.cache = "no-store";
  const response = await fetch(path, opts);
  if (response.status === 401) throw new Unauthorized("the token was refused");
  if (response.status === 404 && opts.allow404) return null;
  const data = await response.json();
  // /readyz answers 503 with its whole body when the store fails: still worth showing.
  if (!response.ok && !(response.status === 503 && opts.unready)) {
    throw new Error(data.detail || response.statusText);
  }
  return data;
}

// el("td", {className: "x"}, "text", child...): an element with text children.
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function showStatus(text) {
  document.getElementById("status").textContent = text;
}

function showStream(text) {
  document.getElementById("stream").textContent = text;
}

// Each render counts in <body data-refreshed>: tests and scripts wait on it.
let refreshes = 0;
function rendered() {
  showStatus("updated " + new Date().toLocaleTimeString());
  body.dataset.refreshed = String(++refreshes);
}

function text(value) {
  if (value === null || value === undefined || value === "") return "—";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function labelsText(labels) {
  return Object.entries(labels || {})
    .map(([key, value]) => key + "=" + value)
    .join(", ");
}

function statusCell(status) {
  return el("td", { className: "status status-" + String(status).toLowerCase() }, text(status));
}

function progress(job) {
  const entities = job.entities || {};
  const subs = Array.isArray(entities.sub_jobs) ? entities.sub_jobs : [];
  const total = Number.isInteger(entities.sub_jobs_total) ? entities.sub_jobs_total : subs.length;
  const done = subs.filter((sub) => sub && (sub.status === "SUCCESS" || sub.status === "FAIL"));
  const failed = subs.filter((sub) => sub && sub.status === "FAIL").length;
  return { total, done: done.length, failed };
}

function progressText(job) {
  const { total, done, failed } = progress(job);
  const percent = job.progress && typeof job.progress.percent === "number" ? job.progress.percent : null;
  const shown = percent === null ? "" : percent + "%";
  if (!total) return shown || "—";
  return done + "/" + total + (failed ? " (" + failed + " failed)" : "") + (shown ? " " + shown : "");
}

// -- the event stream -------------------------------------------------------
// Without a token: EventSource (it resumes with Last-Event-ID by itself).
// With a token: EventSource cannot send headers and the token never goes into
// a URL, so the stream is read with fetch() and the Authorization header, and
// resumed with a Last-Event-ID header after a break.

// onOpen runs each time the stream is (re)opened: the page loads what it
// shows only then, so no change between loading and listening is missed.
function followEvents(query, onEvent, onOpen) {
  const path = "/v1/events" + (query ? "?" + query : "");
  if (!tokenRequired) {
    const source = new EventSource(path);
    source.onmessage = onEvent;
    source.onerror = () => showStream("event stream interrupted; reconnecting");
    source.onopen = () => {
      showStream("live");
      onOpen();
    };
    source.addEventListener("jobwatchd.job.transition", onEvent);
    source.addEventListener("jobwatchd.subjob.transition", onEvent);
    return;
  }
  let lastId = null;
  let retry = 2000;
  const run = async () => {
    for (;;) {
      try {
        const extra = { Accept: "text/event-stream" };
        if (lastId !== null) extra["Last-Event-ID"] = lastId;
        const response = await fetch(path, {
          headers: headers(extra),
          credentials: "omit",
          cache: "no-store",
        });
        if (response.status === 401) return signedOut("the token was refused");
        if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
        showStream("live");
        onOpen();
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const event = parseBlock(block);
            if (event.id !== null) lastId = event.id;
            if (event.retry !== null) retry = event.retry;
            if (event.data !== null) onEvent(event);
          }
        }
      } catch (error) {
        showStream("event stream interrupted; reconnecting");
      }
      await new Promise((resolve) => setTimeout(resolve, retry));
    }
  };
  run();
}

function parseBlock(block) {
  const event = { id: null, type: "message", data: null, retry: null };
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") event.id = value;
    else if (field === "event") event.type = value;
    else if (field === "data") data.push(value);
    else if (field === "retry" && /^\d+$/.test(value)) event.retry = Number(value);
  }
  if (data.length) event.data = data.join("\n");
  return event;
}

// Calls fn at most once per interval however many events arrive.
function debounced(fn, interval) {
  let timer = null;
  return () => {
    if (timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      fn().catch(failed);
    }, interval);
  };
}

// Renders with refresh() once the event stream is open, and again (at most
// once per interval) after events; without a stream after 3 s, renders anyway.
function live(query, refresh, interval) {
  let opened = false;
  followEvents(query, debounced(refresh, interval), () => {
    opened = true;
    refresh().catch(failed);
  });
  setTimeout(() => {
    if (!opened) refresh().catch(failed);
  }, 3000);
}

// -- pages ------------------------------------------------------------------

// The greatest job id below every id starting with prefix: the `after`
// cursor that starts a listing at the prefix (ids sort by their bytes).
function idBefore(prefix) {
  const order = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
  const last = prefix[prefix.length - 1];
  const head = prefix.slice(0, -1);
  if (last === "-") return head || null;
  const previous = order[order.indexOf(last) - 1];
  return (head + previous).padEnd(64, "z");
}

function jobsQuery(params) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  const status = (params.get("status") || "").trim();
  if (status) query.set("status", status);
  const service = (params.get("service") || "").trim();
  if (service) query.set("service", service);
  for (const selector of (params.get("label") || "").split(",")) {
    if (selector.trim()) query.append("label", selector.trim());
  }
  const prefix = (params.get("q") || "").trim();
  const after = params.get("after");
  if (after) query.set("after", after);
  else if (prefix) {
    const start = idBefore(prefix);
    if (start) query.set("after", start);
  }
  return query;
}

async function jobsPage() {
  const params = new URLSearchParams(location.search);
  const prefix = (params.get("q") || "").trim();
  if (prefix && !ID_CHARS.test(prefix)) {
    showStatus("a job id holds only A-Z, a-z, 0-9, _ and -");
    return;
  }
  const tbody = document.querySelector("#jobs tbody");
  const refresh = async () => {
    const [listing, summary] = await Promise.all([
      api("/v1/jobs?" + jobsQuery(params)),
      api("/ui/data/summary"),
    ]);
    let jobs = listing.jobs;
    let next = listing.next;
    if (prefix) {
      const matching = jobs.filter((job) => job.job_id.startsWith(prefix));
      if (matching.length < jobs.length) next = null;
      jobs = matching;
    }
    fill(tbody, jobs.map(jobRow));
    renderCounts(summary);
    renderPager(params, next);
    rendered();
  };
  live("", refresh, 500);
}

function jobRow(job) {
  const link = el("a", { href: "/ui/jobs/" + encodeURIComponent(job.job_id) }, job.job_id);
  return el(
    "tr",
    { dataset: { jobId: job.job_id, status: job.status } },
    el("td", { className: "id" }, link),
    statusCell(job.status),
    el("td", {}, text(job.job_type)),
    el("td", {}, job.account),
    el("td", { className: "service" }, text(job.service)),
    el("td", { className: "labels" }, labelsText(job.labels)),
    el("td", {}, progressText(job)),
    el("td", {}, job.updated_at),
    el("td", { className: "error" }, text(job.fail_reason || (job.last_error || {}).message)),
  );
}

function renderCounts(summary) {
  const section = document.getElementById("counts");
  const entries = Object.entries(summary.counts).sort();
  const params = new URLSearchParams(location.search);
  const items = entries.map(([status, count]) => {
    const query = new URLSearchParams(params);
    query.set("status", status);
    query.delete("after");
    return el(
      "a",
      { className: "count status-" + status.toLowerCase(), href: "/ui?" + query },
      status + " ",
      el("b", { dataset: { status } }, count),
    );
  });
  section.replaceChildren(el("span", { className: "count" }, "all ", el("b", {}, summary.total)), ...items);
}

function renderPager(params, next) {
  const pager = document.getElementById("pager");
  const links = [];
  if (params.get("after")) {
    const first = new URLSearchParams(params);
    first.delete("after");
    links.push(el("a", { href: "/ui?" + first, id: "first-page" }, "First page"));
  }
  if (next) {
    const following = new URLSearchParams(params);
    following.set("after", next);
    links.push(el("a", { href: "/ui?" + following, id: "next-page" }, "Next page"));
  }
  pager.replaceChildren(...links);
}

async function jobPage() {
  const jobId = body.dataset.jobId;
  const refresh = async () => {
    const job = await api("/v1/jobs/" + encodeURIComponent(jobId), { allow404: true });
    if (job === null) {
      document.getElementById("job-summary").replaceChildren(el("p", {}, "This job is not tracked."));
      return;
    }
    renderJob(job);
    rendered();
  };
  live("job=" + encodeURIComponent(jobId), refresh, 300);
}

function definition(term, value) {
  return [el("dt", {}, term), el("dd", {}, text(value))];
}

function renderJob(job) {
  const error = job.last_error ? job.last_error.code + ": " + job.last_error.message : null;
  const list = el(
    "dl",
    {},
    ...definition("Status", job.status),
    ...definition("Type", job.job_type),
    ...definition("Account", job.account),
    ...definition("Service", job.service),
    ...definition("Project", job.project_id),
    ...definition("Labels", labelsText(job.labels)),
    ...definition("Begin", job.begin_time),
    ...definition("End", job.end_time),
    ...definition("Error code", job.error_code),
    ...definition("Fail reason", job.fail_reason),
    ...definition("Polls", job.polls),
    ...definition("Next poll", job.next_poll_at),
    ...definition("Last poll error", error),
  );
  list.dataset.status = job.status;
  document.getElementById("job-summary").replaceChildren(list);
  const { total, done, failed } = progress(job);
  const bar = el("progress", { max: total || 1, value: total ? done : job.terminal ? 1 : 0 });
  const label = total ? done + " of " + total + " sub-jobs done" + (failed ? ", " + failed + " failed" : "") : "no sub-jobs";
  document.getElementById("progress").replaceChildren(bar, el("span", {}, " " + label));
  fill(
    document.querySelector("#timeline tbody"),
    (job.history || []).map((step) => el("tr", {}, el("td", {}, step.at), el("td", {}, text(step.from)), el("td", {}, text(step.to)))),
  );
  const subs = Array.isArray((job.entities || {}).sub_jobs) ? job.entities.sub_jobs : [];
  fill(document.querySelector("#subjobs tbody"), subs.map(subJobRow));
}

function subJobRow(sub) {
  const entities = Object.assign({}, sub.entities || {});
  const message = entities.errorcode_message;
  delete entities.errorcode_message;
  const parts = [sub.error_code, sub.fail_reason, message].filter((part) => part);
  const error = [...new Set(parts)].join(" — ");
  return el(
    "tr",
    {},
    el("td", { className: "id" }, text(sub.job_id)),
    statusCell(sub.status),
    el("td", {}, text(sub.job_type)),
    el("td", {}, text(sub.begin_time)),
    el("td", {}, text(sub.end_time)),
    el("td", { className: "error" }, text(error)),
    el("td", { className: "entities" }, Object.keys(entities).length ? JSON.stringify(entities) : "—"),
  );
}

function seconds(value) {
  return value ? Number(value).toFixed(1) + " s" : "0 s";
}

async function sinksPage() {
  const refresh = async () => {
    const [ready, summary, letters] = await Promise.all([
      api("/readyz", { unready: true }),
      api("/ui/data/summary"),
      api("/v1/dead-letters"),
    ]);
    const rows = Object.entries(ready.sinks || {}).map(([name, stats]) => {
      const lag = summary.sinks[name] || {};
      return el(
        "tr",
        { dataset: { sink: name } },
        el("td", {}, name),
        el("td", {}, stats.position),
        el("td", { className: "backlog" }, lag.backlog ?? "—"),
        el("td", {}, seconds(lag.lag_seconds)),
        el("td", {}, stats.delivered),
        el("td", {}, stats.failures),
        el("td", {}, stats.in_flight),
        el("td", {}, stats.dead_lettered ?? 0),
      );
    });
    fill(document.querySelector("#sinks tbody"), rows);
    fill(document.querySelector("#dead-letters tbody"), letters.dead_letters.map(deadLetterRow));
    rendered();
  };
  await refresh();
  setInterval(() => refresh().catch(failed), 5000);
}

function deadLetterRow(entry) {
  const event = entry.event || {};
  const cell = el("td", {});
  // Changing state needs the token (and the daemon's Origin rules apply).
  if (tokenRequired) {
    const button = el("button", { type: "button" }, "Redeliver");
    button.addEventListener("click", () => redeliver(entry, button).catch(failed));
    cell.append(button);
  }
  return el(
    "tr",
    {},
    el("td", {}, text(entry.sink)),
    el("td", { className: "id" }, text(entry.event_id)),
    el("td", {}, text(entry.type || event.type)),
    el("td", {}, text(entry.job_id || event.subject)),
    el("td", { className: "error" }, text(entry.reason)),
    el("td", {}, text(entry.dead_lettered_at)),
    cell,
  );
}

async function redeliver(entry, button) {
  button.disabled = true;
  const report = await api("/v1/dead-letters/redeliver", {
    method: "POST",
    // A JSON body and the custom header: a cross-site form can send neither.
    headers: { "Content-Type": "application/json", "X-Requested-By": "jobwatchd-ui" },
    body: JSON.stringify({ sink: entry.sink, event_ids: [entry.event_id] }),
  });
  showStatus("redelivered " + report.redelivered.length + ", failed " + report.failed.length);
}

async function accountsPage() {
  const refresh = async () => {
    const ready = await api("/readyz", { unready: true });
    const rows = Object.entries(ready.accounts || {}).map(([name, state]) => {
      const error = state.last_error ? state.last_error.code + ": " + state.last_error.message : null;
      const health = state.last_poll === null ? "not polled yet" : state.reachable ? "reachable" : "unreachable";
      return el(
        "tr",
        { dataset: { account: name } },
        el("td", {}, name),
        el("td", { className: "health" }, health),
        el("td", { className: "last-poll" }, text(state.last_poll)),
        el("td", {}, text(state.last_poll_at)),
        el("td", { className: "throttled" }, state.paused_for > 0 ? seconds(state.paused_for) : "no"),
        el("td", { className: "error" }, text(error)),
      );
    });
    fill(document.querySelector("#accounts tbody"), rows);
    rendered();
  };
  await refresh();
  setInterval(() => refresh().catch(failed), 5000);
}

// -- the token --------------------------------------------------------------

const pages = { jobs: jobsPage, job: jobPage, sinks: sinksPage, accounts: accountsPage };

function failed(error) {
  if (error instanceof Unauthorized) signedOut(error.message);
  else showStatus("error: " + error.message);
}

function signedOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById("content").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
}

function start() {
  document.getElementById("content").hidden = false;
  document.getElementById("login").hidden = true;
  document.getElementById("logout").hidden = !tokenRequired;
  const page = pages[body.dataset.page];
  if (page) page().catch(failed);
}

function login(event) {
  event.preventDefault();
  const form = event.target;
  const candidate = form.elements.token.value.trim();
  fetch("/v1/jobs?limit=1", {
    headers: { Accept: "application/json", Authorization: "Bearer " + candidate },
    credentials: "omit",
    cache: "no-store",
  }).then((response) => {
    if (response.status === 401) {
      document.getElementById("login-error").textContent = "wrong token";
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, candidate);
    form.reset();
    start();
  }, failed);
}

document.getElementById("login").addEventListener("submit", login);
document.getElementById("logout").addEventListener("click", () => {
  signedOut("");
});
if (tokenRequired && !token()) signedOut("");
else start();

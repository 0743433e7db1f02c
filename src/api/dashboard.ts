/**
 * The dashboard: one self-contained page (inline CSS and JS, no external
 * assets, so it works on an air-gapped cluster and in the compiled binary).
 * It polls `/v1/cluster` and `/v1/jobs` every 2 s and draws members (roles,
 * free slots, LLM endpoint load) and jobs (progress, counts, rate, tokens,
 * metrics, cancel).
 *
 * The page itself carries no data, so it is served without the token; its
 * script asks for the token the first time the API answers 401 and keeps it
 * in sessionStorage (a `#token=...` fragment in the address is taken once
 * and removed from the address bar, for links made by scripts). The inline
 * script is written without template literals so it can live in this
 * template string untouched.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>matrixd</title>
<style>
  :root { --fg:#1d2433; --dim:#6b7385; --line:#e3e6ec; --bg:#f7f8fa; --card:#fff; --ok:#2f9e5b; --bad:#d64545; --run:#7aa7e8; --warn:#c98a12; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
  header { display:flex; align-items:baseline; gap:16px; padding:14px 22px; background:var(--card); border-bottom:1px solid var(--line); }
  header h1 { margin:0; font-size:18px; }
  header .dim { color:var(--dim); }
  #error { color:var(--bad); font-weight:600; }
  main { padding:18px 22px; display:grid; gap:22px; }
  section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 16px; overflow-x:auto; }
  h2 { font-size:15px; margin:0 0 10px; }
  h2 .dim { font-weight:400; color:var(--dim); }
  table { border-collapse:collapse; width:100%; }
  th, td { text-align:left; padding:6px 8px; border-top:1px solid var(--line); vertical-align:top; }
  th { color:var(--dim); font-weight:500; border-top:0; white-space:nowrap; }
  td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
  .mono { font-family:ui-monospace, "SFMono-Regular", Menlo, monospace; font-size:12.5px; }
  .pill { display:inline-block; padding:1px 7px; border-radius:9px; font-size:12px; background:#eef1f5; margin:1px 2px 1px 0; white-space:nowrap; }
  .pill.running { background:#e3f4ea; color:#1f6e3f; }
  .pill.draining, .pill.cancelled { background:#fbefd9; color:#7a5208; }
  .pill.done { background:#e6eefb; color:#234f8f; }
  .pill.bad { background:#fbe3e3; color:#8f2323; }
  .bar { position:relative; height:10px; min-width:160px; background:#edf0f4; border-radius:5px; overflow:hidden; display:flex; }
  .bar span { display:block; height:100%; }
  .bar .ok { background:var(--ok); } .bar .failed { background:var(--bad); } .bar .running { background:var(--run); }
  .load { display:inline-flex; align-items:center; gap:5px; margin:1px 10px 1px 0; white-space:nowrap; }
  .load .bar { min-width:60px; width:60px; height:7px; }
  .load .bar .used { background:var(--warn); }
  .dim { color:var(--dim); }
  button { font:inherit; font-size:12px; padding:2px 9px; border:1px solid var(--line); border-radius:5px; background:#fff; cursor:pointer; }
  button:hover { border-color:var(--bad); color:var(--bad); }
  .empty { color:var(--dim); padding:8px; }
</style>
</head>
<body>
<header>
  <h1>matrixd</h1>
  <span id="summary" class="dim">loading...</span>
  <span id="error"></span>
  <span style="flex:1"></span>
  <button id="set-token" type="button" hidden>set token</button>
  <span id="updated" class="dim"></span>
</header>
<main>
  <section>
    <h2>Members <span id="members-count" class="dim"></span></h2>
    <table id="members">
      <thead><tr><th>node</th><th>state</th><th>roles (busy/slots, queued)</th><th>LLM endpoints (in flight/limit)</th><th>version</th><th>up</th><th>seen</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section>
    <h2>Jobs <span id="jobs-count" class="dim"></span></h2>
    <table id="jobs">
      <thead><tr><th>job</th><th>workflow</th><th>state</th><th>progress</th><th>ok</th><th>failed</th><th>running</th><th>queued</th><th>rows/s</th><th>tokens</th><th>metrics</th><th>age</th><th></th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<script>
(function () {
  "use strict";
  var KEY = "matrixd.token";
  var token = sessionStorage.getItem(KEY);
  var asked = false;
  var m = /[#&]token=([^&]+)/.exec(location.hash);
  if (m) {
    token = decodeURIComponent(m[1]);
    sessionStorage.setItem(KEY, token);
    history.replaceState(null, "", location.pathname + location.search);
  }

  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "cls") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return e;
  }
  function num(n) { return (n || 0).toLocaleString("en-US"); }
  function short(n) {
    if (n >= 1e9) return (n / 1e9).toFixed(1) + "G";
    if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return String(n);
  }
  function ago(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d";
  }
  function plural(n, word) { return num(n) + " " + word + (n === 1 ? "" : "s"); }
  function pct(part, whole) { return whole > 0 ? Math.max(0, Math.min(100, (100 * part) / whole)) : 0; }
  function segment(cls, width, title) {
    var s = el("span", { cls: cls, title: title });
    s.style.width = width + "%";
    return s;
  }

  function askToken() {
    var t = window.prompt("This matrixd API needs its bearer token:");
    if (t && t.trim()) {
      token = t.trim();
      sessionStorage.setItem(KEY, token);
      return true;
    }
    return false;
  }

  function api(path, init) {
    init = init || {};
    var headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    init.headers = headers;
    return fetch(path, init).then(function (r) {
      if (r.status === 401) {
        // Ask once; a wrong or refused token shows a button instead of prompting every poll.
        if (!asked) {
          asked = true;
          if (askToken()) return api(path, init);
        }
        document.getElementById("set-token").hidden = false;
        throw new Error("the API needs a valid token");
      }
      return r.json().then(function (body) {
        if (!r.ok) throw new Error((body && body.error) || ("HTTP " + r.status));
        return body;
      }, function () { throw new Error("HTTP " + r.status + " (not JSON)"); });
    });
  }

  function roleCell(roles) {
    var td = el("td");
    var keys = Object.keys(roles || {}).sort();
    if (!keys.length) td.appendChild(el("span", { cls: "dim", text: "none" }));
    keys.forEach(function (k) {
      var r = roles[k];
      var free = Math.max(0, r.slots - r.busy);
      var p = el("span", { cls: "pill" + (free === 0 ? " bad" : ""), title: free + " free slots", "data-role": k },
        k + " " + r.busy + "/" + r.slots + (r.queued ? " +" + r.queued : ""));
      td.appendChild(p);
    });
    return td;
  }

  function llmCell(services) {
    var td = el("td");
    var llm = (services && services.llm) || [];
    if (!llm.length) td.appendChild(el("span", { cls: "dim", text: "none" }));
    llm.forEach(function (e) {
      var bar = el("span", { cls: "bar" }, segment("used", pct(e.inFlight, e.limit)));
      var label = e.url + (e.models && e.models.length ? " (" + e.models.join(", ") + ")" : "");
      var text = e.inFlight + "/" + e.limit + (e.waiting ? " +" + e.waiting + " waiting" : "") +
        (e.latencyMs ? " " + Math.round(e.latencyMs) + "ms" : "");
      td.appendChild(el("div", { cls: "load", title: label },
        el("span", { cls: "mono" + (e.healthy ? "" : " pill bad"), text: e.url + (e.healthy ? "" : " down") }), bar, el("span", { cls: "dim", text: text })));
    });
    if (services && services.env) {
      var env = services.env;
      td.appendChild(el("div", { cls: "load" }, el("span", { cls: "mono", text: "env " + env.driver }),
        el("span", { cls: "bar" }, segment("used", pct(env.inUse, env.capacity))), el("span", { cls: "dim", text: env.inUse + "/" + env.capacity })));
    }
    return td;
  }

  function drawMembers(cluster) {
    var body = document.querySelector("#members tbody");
    var now = Date.now();
    var members = cluster.members.slice().sort(function (a, b) { return a.node < b.node ? -1 : 1; });
    body.replaceChildren.apply(body, members.map(function (mb) {
      return el("tr", { "data-node": mb.node },
        el("td", { cls: "mono" }, mb.node, mb.node === cluster.node ? el("span", { cls: "dim", text: " (this node)" }) : null),
        el("td", null, el("span", { cls: "pill " + mb.state, text: mb.state })),
        roleCell(mb.roles), llmCell(mb.services),
        el("td", { cls: "mono", text: mb.version }),
        el("td", { cls: "num", text: ago(now - mb.startedAt) }),
        el("td", { cls: "num", text: ago(now - mb.seenAt) + " ago" }));
    }));
    if (!members.length) body.appendChild(el("tr", null, el("td", { cls: "empty", colspan: "7", text: "no members" })));
    var slots = 0, busy = 0;
    members.forEach(function (mb) { for (var k in mb.roles) { slots += mb.roles[k].slots; busy += mb.roles[k].busy; } });
    document.getElementById("members-count").textContent = plural(members.length, "node") + ", " + num(slots - busy) + " of " + num(slots) + " slots free";
    return members.length;
  }

  function cancelJob(id) {
    if (!window.confirm("Cancel job " + id + "?")) return;
    api("/v1/jobs/" + encodeURIComponent(id), { method: "DELETE" }).then(refresh, showError);
  }

  function metricsText(metrics) {
    if (!metrics) return "";
    return Object.keys(metrics).map(function (k) {
      var v = metrics[k];
      return k + " " + (v === null ? "-" : Number(v).toFixed(3));
    }).join(", ");
  }

  function statePill(j) {
    var attrs = { cls: "pill " + j.state, text: j.state + (j.budgetReached ? " (budget)" : "") };
    var why = j.budgetReached || j.reason;
    if (why) attrs.title = why;
    return el("span", attrs);
  }

  function drawJobs(list) {
    var body = document.querySelector("#jobs tbody");
    var now = Date.now();
    var jobs = list.jobs.slice().sort(function (a, b) { return b.createdAt - a.createdAt; });
    body.replaceChildren.apply(body, jobs.map(function (j) {
      var done = j.ok + j.failed;
      var bar = el("div", { cls: "bar", title: num(done) + " of " + num(j.total) + " rows" },
        segment("ok", pct(j.ok, j.total), "ok"), segment("failed", pct(j.failed, j.total), "failed"), segment("running", pct(j.running, j.total), "running"));
      var left = j.total - done;
      var eta = j.state === "running" && j.rate > 0 ? " ETA " + ago((1000 * left) / j.rate) : "";
      var cancel = j.state === "running" ? el("button", { type: "button", "data-cancel": j.id, text: "cancel" }) : null;
      if (cancel) cancel.addEventListener("click", function () { cancelJob(j.id); });
      return el("tr", { "data-job": j.id },
        el("td", { cls: "mono", title: "accepted by " + j.acceptedBy, text: j.id }),
        el("td", { text: j.workflow }),
        el("td", null, statePill(j)),
        el("td", null, bar, el("div", { cls: "dim", text: num(done) + " / " + num(j.total) + " (" + pct(done, j.total).toFixed(1) + "%)" + eta })),
        el("td", { cls: "num", text: num(j.ok) }),
        el("td", { cls: "num", text: num(j.failed) }),
        el("td", { cls: "num", text: num(j.running) }),
        el("td", { cls: "num", text: num(j.queued) }),
        el("td", { cls: "num", text: j.rate >= 100 ? j.rate.toFixed(0) : j.rate.toFixed(1) }),
        el("td", { cls: "num", title: "prompt " + num(j.promptTokens) + ", completion " + num(j.completionTokens),
          text: short(j.promptTokens + j.completionTokens) }),
        el("td", { cls: "mono", text: metricsText(j.metrics) }),
        el("td", { cls: "num", text: ago(now - j.createdAt) }),
        el("td", null, cancel));
    }));
    if (!jobs.length) body.appendChild(el("tr", null, el("td", { cls: "empty", colspan: "13", text: "no jobs yet" })));
    var running = jobs.filter(function (j) { return j.state === "running"; }).length;
    document.getElementById("jobs-count").textContent = plural(jobs.length, "job") + ", " + running + " running";
    return running;
  }

  function showError(err) {
    document.getElementById("error").textContent = String((err && err.message) || err);
  }

  var timer = null;
  function refresh() {
    if (timer) clearTimeout(timer);
    return Promise.all([api("/v1/cluster"), api("/v1/jobs")]).then(function (r) {
      var nodes = drawMembers(r[0]);
      var running = drawJobs(r[1]);
      document.getElementById("summary").textContent = "node " + r[0].node + " · " + plural(nodes, "member") + " · " + plural(running, "job") + " running";
      document.getElementById("error").textContent = "";
      document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
      document.body.setAttribute("data-loaded", "true");
    }, showError).then(function () { timer = setTimeout(refresh, 2000); });
  }

  document.getElementById("set-token").addEventListener("click", function () {
    if (askToken()) { document.getElementById("set-token").hidden = true; refresh(); }
  });
  refresh();
})();
</script>
</body>
</html>
`;

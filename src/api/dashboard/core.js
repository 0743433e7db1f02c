// The dashboard's core: DOM and number helpers, the API with its token,
// the routes in the address's fragment, the header, and the poll loop that
// draws the current view. Views (cluster.js, job.js, task.js) register in
// M.views; page.ts joins the files and calls M.start().
(function () {
  "use strict";
  var M = (window.matrixd = { views: {} });
  var KEY = "matrixd.token";
  var token = sessionStorage.getItem(KEY);
  var asked = false;
  var t = /[#&]token=([^&]+)/.exec(location.hash);
  if (t) {
    token = decodeURIComponent(t[1]);
    sessionStorage.setItem(KEY, token);
    var rest = location.hash.replace(/[#&]token=[^&]*/, "").replace(/^#?&?/, "");
    history.replaceState(null, "", location.pathname + location.search + "#" + (rest || "/"));
  }

  M.el = function (tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      var v = attrs[k];
      if (v === undefined || v === null) continue;
      if (k === "text") e.textContent = v;
      else if (k === "cls") e.className = v;
      else e.setAttribute(k, v);
    }
    for (var i = 2; i < arguments.length; i++) add(e, arguments[i]);
    return e;
  };
  function add(e, c) {
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(c)) c.forEach(function (x) { add(e, x); });
    else e.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  M.num = function (n) { return (n || 0).toLocaleString("en-US"); };
  M.short = function (n) {
    n = n || 0;
    if (n >= 1e9) return (n / 1e9).toFixed(1) + "G";
    if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return String(Math.round(n));
  };
  M.ago = function (ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d";
  };
  M.ms = function (ms) { return ms >= 10000 ? (ms / 1000).toFixed(1) + "s" : Math.round(ms) + "ms"; };
  M.rate = function (r) { return r >= 100 ? r.toFixed(0) : r.toFixed(1); };
  M.plural = function (n, word) { return M.num(n) + " " + word + (n === 1 ? "" : "s"); };
  M.pct = function (part, whole) { return whole > 0 ? Math.max(0, Math.min(100, (100 * part) / whole)) : 0; };
  M.segment = function (cls, width, title) {
    var s = M.el("span", { cls: cls, title: title });
    s.style.width = width + "%";
    return s;
  };
  /** A small bar of `used` (and `queued` after it) of `limit`, with a label. */
  M.load = function (label, used, limit, queued, title, extra) {
    var bar = M.el("span", { cls: "bar" }, M.segment("used", M.pct(used, limit)), queued ? M.segment("queue", M.pct(queued, limit)) : null);
    return M.el("span", { cls: "load", title: title }, label, bar,
      M.el("span", { cls: "dim", text: used + "/" + limit + (queued ? " +" + queued + " waiting" : "") + (extra || "") }));
  };
  M.progress = function (j) {
    return M.el("div", { cls: "bar", title: M.num(j.ok + j.failed) + " of " + M.num(j.total) + " rows" },
      M.segment("ok", M.pct(j.ok, j.total), "ok"), M.segment("failed", M.pct(j.failed, j.total), "failed"),
      M.segment("running", M.pct(j.running, j.total), "running"));
  };
  M.statePill = function (j) {
    return M.el("span", { cls: "pill " + j.state, title: j.budgetReached || j.reason, text: j.state + (j.budgetReached ? " (budget)" : "") });
  };
  M.jobHref = function (id) { return "#/jobs/" + encodeURIComponent(id); };
  M.taskHref = function (job, task) { return M.jobHref(job) + "/tasks/" + encodeURIComponent(task); };
  /** A section with a heading; `note` goes dimmed after the title (an element of id `ID-note` to update). */
  M.section = function (id, title, body) {
    return M.el("section", { id: id }, M.el("h2", null, title, M.el("span", { cls: "dim", id: id + "-note" })), body);
  };
  M.note = function (id, text) {
    var n = document.getElementById(id + "-note");
    if (n) n.textContent = text ? " " + text : "";
  };
  /** Put `children` in the element of `id` in place of what it held. */
  M.fill = function (id) {
    var e = document.getElementById(id);
    if (!e) return;
    var kids = [];
    for (var i = 1; i < arguments.length; i++) add({ appendChild: function (c) { kids.push(c); } }, arguments[i]);
    e.replaceChildren.apply(e, kids);
  };

  /**
   * The cluster's events (GET /v1/events): the latest `keep` first, then
   * read on with `after` so each poll brings only what is new; held newest
   * first. A node without the feed (404) is asked once.
   */
  M.feed = function (job, keep) {
    var f = { items: [], after: null, available: true };
    f.poll = function () {
      if (!f.available) return Promise.resolve(f);
      var q = "/v1/events?limit=" + (f.after === null ? (keep || 200) : 200) + (f.after === null ? "" : "&after=" + f.after) +
        (job ? "&job=" + encodeURIComponent(job) : "");
      return M.api(q, null, { nullOn404: true }).then(function (body) {
        if (!body) { f.available = false; return f; }
        var evs = body.events || [];
        var first = f.after === null;
        if (first) f.after = 0;
        evs.forEach(function (e) { if (e.seq > f.after) f.after = e.seq; });
        f.items = evs.slice().reverse().concat(f.items).slice(0, keep || 200);
        return !first && evs.length >= 200 ? f.poll() : f;
      });
    };
    return f;
  };
  M.eventRows = function (f, withJob) {
    if (!f.available) return [M.el("tr", null, M.el("td", { cls: "empty", colspan: "4", text: "this node has no events feed" }))];
    if (!f.items.length) return [M.el("tr", null, M.el("td", { cls: "empty", colspan: "4", text: "no events yet" }))];
    return f.items.map(function (e) {
      var bad = /lost|down|budget|restarted/.test(e.kind);
      return M.el("tr", { cls: bad ? (e.kind === "member.lost" ? "ev-lost" : "ev-bad") : null, "data-kind": e.kind, "data-seq": String(e.seq), "data-subject": e.subject },
        M.el("td", { cls: "num dim", title: new Date(e.at).toISOString(), text: new Date(e.at).toLocaleTimeString() }),
        M.el("td", null, M.el("span", { cls: "pill" + (bad ? " bad" : ""), text: e.kind })),
        M.el("td", { cls: "mono", text: e.subject || "" }),
        M.el("td", null, e.message, withJob && e.job ? [" ", M.el("a", { href: M.jobHref(e.job), cls: "mono", text: e.job })] : null,
          M.el("span", { cls: "dim", text: " · seen by " + e.node })));
    });
  };

  function askToken() {
    var v = window.prompt("This matrixd API needs its bearer token:");
    if (v && v.trim()) {
      token = v.trim();
      sessionStorage.setItem(KEY, token);
      return true;
    }
    return false;
  }

  /** A request to this node's API: the parsed JSON, or the text with `asText`; a 404 is `null` with `nullOn404`. */
  M.api = function (path, init, opts) {
    init = init || {};
    opts = opts || {};
    var headers = { Accept: opts.asText ? "application/x-ndjson" : "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    init.headers = headers;
    return fetch(path, init).then(function (r) {
      if (r.status === 401) {
        // Ask once; a wrong or refused token shows a button instead of prompting at every poll.
        if (!asked) {
          asked = true;
          if (askToken()) return M.api(path, init, opts);
        }
        document.getElementById("set-token").hidden = false;
        throw new Error("the API needs a valid token");
      }
      if (r.status === 404 && opts.nullOn404) return null;
      if (opts.asText && r.ok) return r.text();
      return r.json().then(function (body) {
        if (!r.ok) throw new Error((body && body.error) || ("HTTP " + r.status));
        return body;
      }, function () { throw new Error("HTTP " + r.status + " (not JSON)"); });
    });
  };

  /** The route in the address's fragment. */
  M.route = function () {
    var h = location.hash.replace(/^#\/?/, "");
    var m = /^jobs\/([^/]+)\/tasks\/(.+)$/.exec(h);
    if (m) return { view: "task", job: decodeURIComponent(m[1]), task: decodeURIComponent(m[2]) };
    m = /^jobs\/([^/]+)$/.exec(h);
    if (m) return { view: "job", job: decodeURIComponent(m[1]) };
    return { view: "cluster" };
  };

  M.showError = function (err) {
    document.getElementById("error").textContent = err ? String((err && err.message) || err) : "";
  };

  /** The header's line: this node, the members, the LLM slot groups as they are, jobs running. */
  M.summary = function (cluster, jobs) {
    var members = cluster.members;
    var llm = { slots: 0, busy: 0 };
    members.forEach(function (mb) {
      var g = mb.groups && mb.groups.llm;
      if (g) { llm.slots += g.slots; llm.busy += g.busy; }
    });
    var parts = ["node " + cluster.node, M.plural(members.length, "member")];
    if (llm.slots) parts.push("LLM slots " + M.num(llm.busy) + " busy of " + M.num(llm.slots));
    if (jobs) parts.push(M.plural(jobs.filter(function (j) { return j.state === "running"; }).length, "job") + " running");
    document.getElementById("summary").textContent = parts.join(" · ");
  };

  var timer = null;
  var current = null;
  var generation = 0;
  /** Draw the current route now, then again after the delay its view asks for. */
  M.refresh = function () {
    if (timer) clearTimeout(timer);
    timer = null;
    var route = M.route();
    var key = JSON.stringify(route);
    var view = M.views[route.view];
    var root = document.getElementById("view");
    if (current !== key) {
      if (current !== null) {
        var old = M.views[JSON.parse(current).view];
        if (old && old.leave) old.leave();
      }
      current = key;
      root.replaceChildren();
      if (view.enter) view.enter(root, route);
    }
    var mine = ++generation;
    return Promise.resolve()
      .then(function () { return view.draw(root, route); })
      .then(function (delay) {
        if (mine !== generation) return;
        M.showError(null);
        document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
        document.body.setAttribute("data-loaded", "true");
        document.body.setAttribute("data-view", route.view);
        timer = setTimeout(M.refresh, delay || 2000);
      }, function (err) {
        if (mine !== generation) return;
        M.showError(err);
        timer = setTimeout(M.refresh, 3000);
      });
  };

  M.start = function () {
    document.getElementById("set-token").addEventListener("click", function () {
      if (askToken()) { document.getElementById("set-token").hidden = true; M.refresh(); }
    });
    window.addEventListener("hashchange", function () { M.refresh(); });
    M.refresh();
  };
})();

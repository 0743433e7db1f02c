// The cluster view (#/): members compact (roles only of workflows with a
// live job, the LLM slot group, services and their load), jobs, events.
(function () {
  "use strict";
  var M = window.matrixd;
  var el = M.el;
  var feed = null;

  /** The role keys (`workflow.role`) of a member grouped by the live workflow they belong to; the rest counted. */
  M.rolesByWorkflow = function (roles, workflows) {
    var out = { live: {}, idle: 0 };
    Object.keys(roles || {}).sort().forEach(function (k) {
      var wf = null;
      workflows.forEach(function (w) { if (k.indexOf(w + ".") === 0 && (!wf || w.length > wf.length)) wf = w; });
      if (wf === null) { out.idle++; return; }
      (out.live[wf] = out.live[wf] || []).push({ key: k, role: k.slice(wf.length + 1), load: roles[k] });
    });
    return out;
  };

  function rolePill(r) {
    var l = r.load;
    var free = Math.max(0, l.slots - l.busy);
    return el("span", { cls: "pill" + (free === 0 ? " bad" : ""), title: r.key + ": " + free + " free slots", "data-role": r.key },
      r.role + " " + l.busy + "/" + l.slots + (l.queued ? " +" + l.queued : ""));
  }

  function rolesCell(mb, live) {
    var g = M.rolesByWorkflow(mb.roles, live);
    var names = Object.keys(g.live).sort();
    return el("td", null,
      names.map(function (wf) {
        return el("div", { cls: "wf", "data-workflow": wf }, el("span", { cls: "name", text: wf }), g.live[wf].map(rolePill));
      }),
      g.idle ? el("div", { cls: "dim", text: M.plural(g.idle, "role") + " of workflows with no live job" }) : null,
      !names.length && !g.idle ? el("span", { cls: "dim", text: "none" }) : null);
  }

  /** A member's LLM endpoints (requests running and waiting against the limit) and environment pool. */
  M.servicesCell = function (services) {
    var llm = (services && services.llm) || [];
    var parts = llm.map(function (e) {
      var title = e.url + (e.models && e.models.length ? " (" + e.models.join(", ") + ")" : "") +
        (e.serverRunning !== undefined ? "; the server runs " + e.serverRunning + ", queues " + (e.serverWaiting || 0) : "");
      var label = el("span", { cls: "mono" + (e.healthy ? "" : " pill bad"), text: e.url.replace(/^https?:\/\//, "") + (e.healthy ? "" : " down") });
      return el("div", { "data-endpoint": e.url }, M.load(label, e.inFlight, e.limit, e.waiting, title, e.latencyMs ? " · " + M.ms(e.latencyMs) : ""));
    });
    var env = services && services.env;
    if (env) parts.push(el("div", null, M.load(el("span", { cls: "mono", text: "env " + env.driver }), env.inUse, env.capacity)));
    return el("td", null, parts.length ? parts : el("span", { cls: "dim", text: "none" }));
  };

  M.groupCell = function (mb) {
    var g = mb.groups && mb.groups.llm;
    return el("td", null, g ? M.load("", g.busy, g.slots, 0, "LLM-bound roles share these slots, sized to what the LLM services run") : el("span", { cls: "dim", text: "-" }));
  };

  function drawMembers(cluster, jobs) {
    var now = Date.now();
    var live = jobs.filter(function (j) { return j.state === "running"; }).map(function (j) { return j.workflow; });
    var members = cluster.members.slice().sort(function (a, b) { return a.node < b.node ? -1 : 1; });
    M.fill("members-body", members.length ? members.map(function (mb) {
      return el("tr", { "data-node": mb.node },
        el("td", { cls: "mono" }, mb.node, mb.node === cluster.node ? el("span", { cls: "dim", text: " (this node)" }) : null),
        el("td", null, el("span", { cls: "pill " + mb.state, text: mb.state })),
        M.groupCell(mb), M.servicesCell(mb.services), rolesCell(mb, live),
        el("td", { cls: "mono", text: mb.version }),
        el("td", { cls: "num", text: M.ago(now - mb.startedAt) }),
        el("td", { cls: "num", text: M.ago(now - mb.seenAt) + " ago" }));
    }) : el("tr", null, el("td", { cls: "empty", colspan: "8", text: "no members" })));
    M.note("members", M.plural(members.length, "node"));
  }

  function metricsText(metrics) {
    if (!metrics) return "";
    return Object.keys(metrics).map(function (k) {
      var v = metrics[k];
      return k + " " + (v === null ? "-" : Number(v).toFixed(3));
    }).join(", ");
  }
  M.metricsText = metricsText;

  M.cancelJob = function (id) {
    if (!window.confirm("Cancel job " + id + "?")) return;
    M.api("/v1/jobs/" + encodeURIComponent(id), { method: "DELETE" }).then(M.refresh, M.showError);
  };

  function drawJobs(list) {
    var now = Date.now();
    var jobs = list.jobs.slice().sort(function (a, b) { return b.createdAt - a.createdAt; });
    M.fill("jobs-body", jobs.length ? jobs.map(function (j) {
      var done = j.ok + j.failed;
      var eta = j.state === "running" && j.rate > 0 ? " ETA " + M.ago((1000 * (j.total - done)) / j.rate) : "";
      var cancel = j.state === "running" ? el("button", { type: "button", cls: "danger", "data-cancel": j.id, text: "cancel" }) : null;
      if (cancel) cancel.addEventListener("click", function () { M.cancelJob(j.id); });
      return el("tr", { "data-job": j.id },
        el("td", { cls: "mono", title: "accepted by " + j.acceptedBy }, el("a", { href: M.jobHref(j.id), text: j.id })),
        el("td", { text: j.workflow }),
        el("td", null, M.statePill(j)),
        el("td", null, M.progress(j), el("div", { cls: "dim", text: M.num(done) + " / " + M.num(j.total) + " (" + M.pct(done, j.total).toFixed(1) + "%)" + eta })),
        el("td", { cls: "num", text: M.num(j.ok) }),
        el("td", { cls: "num", text: M.num(j.failed) }),
        el("td", { cls: "num", text: M.num(j.running) }),
        el("td", { cls: "num", text: M.num(j.queued) }),
        el("td", { cls: "num", text: M.rate(j.rate) }),
        el("td", { cls: "num", title: "prompt " + M.num(j.promptTokens) + ", completion " + M.num(j.completionTokens), text: M.short(j.promptTokens + j.completionTokens) }),
        el("td", { cls: "mono", text: metricsText(j.metrics) }),
        el("td", { cls: "num", text: M.ago(now - j.createdAt) }),
        el("td", null, cancel));
    }) : el("tr", null, el("td", { cls: "empty", colspan: "13", text: "no jobs yet" })));
    var running = jobs.filter(function (j) { return j.state === "running"; }).length;
    M.note("jobs", M.plural(jobs.length, "job") + ", " + running + " running");
  }

  function head(names) {
    return el("thead", null, el("tr", null, names.map(function (n) {
      return el("th", { cls: /^(ok|failed|running|queued|rows\/s|tokens|up|seen|age)$/.test(n) ? "num" : null, text: n });
    })));
  }
  M.head = head;

  M.views.cluster = {
    enter: function (root) {
      feed = M.feed(null, 100);
      root.append(
        M.section("members", "Members", el("table", { id: "members" },
          head(["node", "state", "LLM slots", "services (running/limit +waiting)", "roles of live workflows (busy/slots +queued)", "version", "up", "seen"]),
          el("tbody", { id: "members-body" }))),
        M.section("jobs", "Jobs", el("table", { id: "jobs" },
          head(["job", "workflow", "state", "progress", "ok", "failed", "running", "queued", "rows/s", "tokens", "metrics", "age", ""]),
          el("tbody", { id: "jobs-body" }))),
        M.section("events", "Events", el("div", { cls: "events" }, el("table", null, el("tbody", { id: "events-body" })))));
    },
    draw: function () {
      return Promise.all([M.api("/v1/cluster"), M.api("/v1/jobs"), feed.poll()]).then(function (r) {
        drawMembers(r[0], r[1].jobs);
        drawJobs(r[1]);
        M.fill("events-body", M.eventRows(feed, true));
        M.note("events", feed.available ? "newest first" : "");
        M.summary(r[0], r[1].jobs);
        return 2000;
      });
    },
  };
})();

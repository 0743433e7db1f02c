// The job page (#/jobs/ID): figures, rows/s, tokens/s and failures over
// time (uPlot), failure reasons, per-role load, LLM endpoints, the latest
// rows, the job's events, download and cancel.
(function () {
  "use strict";
  var M = window.matrixd;
  var el = M.el;
  var chart = null;
  var feed = null;
  var tailShown = -1;
  var onResize = null;

  /** A link to the job's dataset that works for a minute without the token (POST /v1/jobs/:id/download). */
  M.downloadUrl = function (id) {
    return M.api("/v1/jobs/" + encodeURIComponent(id) + "/download", { method: "POST" }).then(function (r) { return r.url; });
  };

  function download(id) {
    M.downloadUrl(id).then(function (url) {
      var a = el("a", { href: url, download: id + ".jsonl" });
      document.body.appendChild(a);
      a.click();
      a.remove();
    }, M.showError);
  }

  /**
   * The timeline as chart columns: bucket start (s), rows/s, failed/s,
   * tokens/s. While the job runs, buckets that may still grow (the nodes
   * write their counters about every second) are left out, so the line
   * does not dip at its end.
   */
  M.chartData = function (tl, live, now) {
    var xs = [], rows = [], failed = [], tokens = [];
    if (!tl) return [xs, rows, failed, tokens];
    for (var i = 0; i < tl.ok.length; i++) {
      var from = tl.start + i * tl.width;
      var secs = tl.width / 1000;
      if (live && from + tl.width > now - 1500) break;
      xs.push(from / 1000);
      rows.push((tl.ok[i] + tl.failed[i]) / secs);
      failed.push(tl.failed[i] / secs);
      tokens.push(tl.tokens[i] / secs);
    }
    return [xs, rows, failed, tokens];
  };

  function drawChart(job) {
    var box = document.getElementById("chart");
    var data = M.chartData(job.timeline, job.state === "running", Date.now());
    box.setAttribute("data-points", String(data[0].length));
    M.note("timeline", job.timeline ? "buckets of " + M.ms(job.timeline.width) : "no rows yet");
    if (!data[0].length) return;
    if (chart) { chart.setData(data); return; }
    box.replaceChildren();
    chart = new uPlot({
      width: Math.max(300, box.clientWidth),
      height: 240,
      series: [
        {},
        { label: "rows/s", stroke: "#2f9e5b", width: 2, scale: "rows", value: function (u, v) { return v === null ? "-" : v.toFixed(1); } },
        { label: "failed/s", stroke: "#d64545", width: 2, scale: "rows", value: function (u, v) { return v === null ? "-" : v.toFixed(2); } },
        { label: "tokens/s", stroke: "#4a78c9", width: 1.5, scale: "tokens", value: function (u, v) { return v === null ? "-" : M.short(v); } },
      ],
      scales: { x: { time: true, range: function (u, lo, hi) { return [lo, Math.max(hi, lo + 20)]; } }, rows: { range: function (u, lo, hi) { return [0, Math.max(1, hi * 1.1)]; } }, tokens: { range: function (u, lo, hi) { return [0, Math.max(1, hi * 1.1)]; } } },
      axes: [
        {},
        { scale: "rows", label: "rows/s", size: 50 },
        { scale: "tokens", side: 1, label: "tokens/s", grid: { show: false }, size: 60, values: function (u, vals) { return vals.map(M.short); } },
      ],
    }, data, box);
  }

  function facts(job) {
    var done = job.ok + job.failed;
    var tokens = job.promptTokens + job.completionTokens;
    var items = [
      ["state", M.statePill(job)],
      ["rows", M.num(done) + " / " + M.num(job.total)],
      ["ok", M.num(job.ok)], ["failed", M.num(job.failed)], ["running", M.num(job.running)], ["queued", M.num(job.queued)],
      ["rows/s", M.rate(job.rate)],
      ["tokens", M.short(tokens)],
    ];
    if (job.state === "running" && job.rate > 0) items.push(["ETA", M.ago((1000 * (job.total - done)) / job.rate)]);
    if (job.budget) items.push(["budget", (job.budget.tokens ? M.short(job.budget.tokens) + " tokens" : "$" + job.budget.cost) + (job.spent ? ", spent " + M.short(job.spent.tokens) : "")]);
    var metrics = M.metricsText(job.metrics);
    if (metrics) items.push(["metrics", el("span", { cls: "mono", text: metrics })]);
    items.push(["accepted by", el("span", { cls: "mono", text: job.acceptedBy })], ["age", M.ago(Date.now() - job.createdAt)]);
    return el("div", { cls: "facts" }, items.map(function (kv) {
      return el("div", { "data-fact": kv[0] }, el("span", { cls: "k", text: kv[0] }), el("span", { cls: "v" }, kv[1]));
    }));
  }

  function drawHead(job) {
    var cancel = job.state === "running" ? el("button", { type: "button", cls: "danger", id: "cancel", text: "cancel job" }) : null;
    if (cancel) cancel.addEventListener("click", function () { M.cancelJob(job.id); });
    var dl = el("button", { type: "button", id: "download", text: "download dataset (JSONL)" });
    dl.addEventListener("click", function () { download(job.id); });
    M.fill("head-body", el("div", { cls: "crumbs" }, el("a", { href: "#/", text: "cluster" }), " / job"),
      el("h2", null, el("span", { cls: "mono", text: job.id }), " ", el("span", { cls: "dim", text: job.workflow })),
      facts(job), M.progress(job), job.reason ? el("div", { cls: "dim", text: job.reason }) : null,
      el("div", { cls: "actions" }, dl, cancel));
  }

  function drawFailures(job) {
    var list = job.failures;
    if (!list || !list.length) {
      M.fill("failures-body", el("div", { cls: "empty", text: job.failed ? M.plural(job.failed, "failed row") + "; no reasons reported" : "no failed rows" }));
      return;
    }
    M.fill("failures-body", el("table", null, M.head(["reason", "rows", "example"]), el("tbody", null, list.map(function (f) {
      return el("tr", { "data-reason": f.reason },
        el("td", null, el("div", { text: f.reason }), f.error && f.error !== f.reason ? el("div", { cls: "dim mono excerpt", title: f.error, text: f.error }) : null),
        el("td", { cls: "num", text: M.num(f.count) }),
        el("td", { cls: "mono" }, f.task ? el("a", { href: M.taskHref(job.id, f.task), text: f.task }) : "-"));
    }))));
  }

  function drawRoles(job, cluster) {
    var rows = [];
    cluster.members.forEach(function (mb) {
      var g = M.rolesByWorkflow(mb.roles, [job.workflow]).live[job.workflow] || [];
      g.forEach(function (r) {
        var l = r.load;
        rows.push(el("tr", { "data-role": r.key, "data-node": mb.node },
          el("td", { text: r.role }), el("td", { cls: "mono", text: mb.node }),
          el("td", null, M.load("", l.busy, l.slots, 0)),
          el("td", { cls: "num", text: M.num(l.queued) }),
          el("td", { cls: "num", text: l.p50Ms !== undefined ? M.ms(l.p50Ms) : "-" }),
          el("td", { cls: "num", text: l.p99Ms !== undefined ? M.ms(l.p99Ms) : "-" })));
      });
    });
    M.fill("roles-body", el("table", null, M.head(["role", "node", "busy/slots", "queued", "step p50", "step p99"]),
      el("tbody", null, rows.length ? rows : el("tr", null, el("td", { cls: "empty", colspan: "6", text: "no node hosts this workflow's roles" })))));
  }

  function drawEndpoints(cluster) {
    var rows = cluster.members.map(function (mb) {
      return el("tr", { "data-node": mb.node }, el("td", { cls: "mono", text: mb.node }), M.groupCell(mb), M.servicesCell(mb.services));
    });
    M.fill("endpoints-body", el("table", null, M.head(["node", "LLM slots", "endpoints (running/limit +waiting)"]), el("tbody", null, rows)));
  }

  function excerpt(row) {
    if (row.status === "failed") return el("span", { cls: "err-text", title: row.error, text: row.error || "failed" });
    var text = typeof row.output === "string" ? row.output : JSON.stringify(row.output);
    return el("span", { title: text && text.slice(0, 2000), text: text ? text.slice(0, 200) : "" });
  }

  function drawTail(job, text) {
    var rows = text.split("\n").filter(function (l) { return l.length > 0; }).map(function (l) { return JSON.parse(l); }).reverse();
    M.note("latest", rows.length ? "last " + rows.length + ", newest first" : "");
    M.fill("latest-body", el("table", null, M.head(["task", "status", "turns", "tokens", "node", "took", "output or error"]), el("tbody", null,
      rows.length ? rows.map(function (r) {
        var u = r.usage || { prompt: 0, completion: 0 };
        return el("tr", { "data-task": r.id },
          el("td", { cls: "mono" }, el("a", { href: M.taskHref(job.id, r.id), text: r.id })),
          el("td", null, el("span", { cls: "pill " + r.status, text: r.status })),
          el("td", { cls: "num", text: String((r.history || []).length) }),
          el("td", { cls: "num", text: M.short(u.prompt + u.completion) }),
          el("td", { cls: "mono", text: ((r.provenance && r.provenance.nodes) || []).join(", ") }),
          el("td", { cls: "num", text: r.timings ? M.ms(r.timings.ms) : "-" }),
          el("td", { cls: "excerpt" }, excerpt(r)));
      }) : el("tr", null, el("td", { cls: "empty", colspan: "7", text: "no rows yet" })))));
  }

  M.views.job = {
    enter: function (root, route) {
      chart = null;
      tailShown = -1;
      feed = M.feed(route.job, 50);
      root.append(
        el("section", { id: "head" }, el("div", { id: "head-body" }, el("span", { cls: "dim", text: "loading..." }))),
        M.section("timeline", "Rows over time", el("div", { id: "chart", "data-points": "0" })),
        M.section("failures", "Failure reasons", el("div", { id: "failures-body" })),
        el("div", { cls: "cols" },
          M.section("roles", "Roles", el("div", { id: "roles-body" })),
          M.section("endpoints", "LLM services", el("div", { id: "endpoints-body" }))),
        M.section("latest", "Latest rows", el("div", { id: "latest-body" })),
        M.section("events", "Events of this job", el("div", { cls: "events" }, el("table", null, el("tbody", { id: "events-body" })))));
      onResize = function () { var box = document.getElementById("chart"); if (chart && box) chart.setSize({ width: Math.max(300, box.clientWidth), height: 240 }); };
      window.addEventListener("resize", onResize);
    },
    leave: function () {
      if (chart) chart.destroy();
      chart = null;
      window.removeEventListener("resize", onResize);
    },
    draw: function (root, route) {
      var path = "/v1/jobs/" + encodeURIComponent(route.job);
      return Promise.all([M.api(path, null, { nullOn404: true }), M.api("/v1/cluster"), feed.poll()]).then(function (r) {
        var job = r[0];
        if (!job) {
          M.fill("head-body", el("div", { cls: "empty", text: "no job \"" + route.job + "\" in this cluster" }));
          return 5000;
        }
        drawHead(job);
        drawChart(job);
        drawFailures(job);
        drawRoles(job, r[1]);
        drawEndpoints(r[1]);
        M.fill("events-body", M.eventRows(feed, false));
        M.summary(r[1]);
        var done = job.ok + job.failed;
        var live = job.state === "running";
        // The latest rows are read again only when there are new ones.
        var tail = done !== tailShown ? M.api(path + "/results?tail=10", null, { asText: true }) : null;
        return Promise.resolve(tail).then(function (text) {
          if (text !== null) { drawTail(job, text); tailShown = done; }
          return live ? 2000 : 10000;
        });
      });
    },
  };
})();

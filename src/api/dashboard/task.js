// The task page (#/jobs/ID/tasks/TASK): one task's row as a person reads
// it: its error, the dialogue turn by turn (speaker, text, tool calls and
// their results, structured replies, per turn model, endpoint, node,
// tokens, latency), its output, metrics, seed and provenance.
(function () {
  "use strict";
  var M = window.matrixd;
  var el = M.el;

  function pretty(v) {
    return typeof v === "string" ? v : JSON.stringify(v, null, 2);
  }

  /** A reply that is a JSON object or array (a structured output), parsed; else undefined. */
  function structured(text) {
    var s = (text || "").trim();
    if (!/^[[{]/.test(s)) return undefined;
    try { return JSON.parse(s); } catch (e) { return undefined; }
  }

  function turnMeta(turn, i) {
    var parts = ["#" + (i + 1)];
    if (turn.model) parts.push(turn.model);
    if (turn.endpoint) parts.push(turn.endpoint);
    if (turn.node) parts.push("on " + turn.node);
    if (turn.usage) parts.push(M.num(turn.usage.prompt) + " prompt + " + M.num(turn.usage.completion) + " completion tokens" +
      (turn.usage.reasoning ? " (" + M.num(turn.usage.reasoning) + " reasoning)" : ""));
    parts.push(M.ms(turn.ms));
    parts.push(new Date(turn.at).toLocaleTimeString());
    return el("span", { cls: "meta", "data-meta": "" }, parts.join(" · "));
  }

  function toolCall(c) {
    var args = structured(c.arguments);
    return el("div", { cls: "call", "data-call": c.id },
      el("span", { cls: "dim", text: "calls " }), el("span", { cls: "name", text: c.name }), el("span", { cls: "dim mono", text: " " + c.id }),
      el("pre", { text: args !== undefined ? pretty(args) : c.arguments }));
  }

  function turnCard(turn, i, callNames) {
    var isResult = !!turn.toolCallId;
    var json = structured(turn.text);
    var body = [];
    if (turn.reasoning) body.push(el("details", null, el("summary", { text: "reasoning" }), el("div", { cls: "text", text: turn.reasoning })));
    if (json !== undefined) body.push(el("div", { cls: "dim", text: isResult ? "result" : "structured reply" }), el("pre", { text: pretty(json) }));
    else if (turn.text) body.push(el(isResult ? "pre" : "div", { cls: isResult ? null : "text", "data-text": "", text: turn.text }));
    (turn.toolCalls || []).forEach(function (c) { body.push(toolCall(c)); });
    return el("div", { cls: "turn" + (isResult ? " tool" : ""), "data-turn": String(i), "data-speaker": turn.role },
      el("div", null, el("span", { cls: "who", text: turn.role }),
        isResult ? el("span", { cls: "dim", text: "result of " + (callNames[turn.toolCallId] || "tool call") + " " + turn.toolCallId + " " }) : null,
        turnMeta(turn, i)),
      body);
  }

  function facts(row) {
    var u = row.usage || { prompt: 0, completion: 0 };
    var p = row.provenance || {};
    var items = [
      ["status", el("span", { cls: "pill " + row.status, text: row.status })],
      ["trial", String(row.trial)],
      ["turns", String((row.history || []).length)],
      ["tokens", M.num(u.prompt) + " + " + M.num(u.completion)],
    ];
    if (row.timings) items.push(["took", M.ms(row.timings.ms)], ["finished", new Date(row.timings.finished).toLocaleTimeString()]);
    if (p.steps !== undefined) items.push(["steps", String(p.steps)]);
    if (p.nodes) items.push(["nodes", el("span", { cls: "mono", text: p.nodes.join(", ") })]);
    if (p.models && p.models.length) items.push(["models", el("span", { cls: "mono", text: p.models.join(", ") })]);
    if (p.attempts && Object.keys(p.attempts).length) items.push(["retries", el("span", { cls: "mono", text: JSON.stringify(p.attempts) })]);
    return el("div", { cls: "facts" }, items.map(function (kv) {
      return el("div", { "data-fact": kv[0] }, el("span", { cls: "k", text: kv[0] }), el("span", { cls: "v" }, kv[1]));
    }));
  }

  function draw(route, row) {
    var crumbs = el("div", { cls: "crumbs" }, el("a", { href: "#/", text: "cluster" }), " / ",
      el("a", { href: M.jobHref(route.job), cls: "mono", text: route.job }), " / task");
    if (!row) {
      M.fill("task-head", crumbs, el("h2", { cls: "mono", text: route.task }), el("div", { cls: "empty", text: "this task has no row yet (it is queued or running)" }));
      return;
    }
    var callNames = {};
    (row.history || []).forEach(function (t) { (t.toolCalls || []).forEach(function (c) { callNames[c.id] = c.name; }); });
    M.fill("task-head", crumbs, el("h2", null, el("span", { cls: "mono", text: row.id }), " ", el("span", { cls: "dim", text: row.workflow })),
      facts(row), row.status === "failed" ? el("div", { cls: "err", id: "task-error", text: row.error || "failed" }) : null);
    M.fill("dialogue-body", (row.history || []).length ? row.history.map(function (t, i) { return turnCard(t, i, callNames); }) : el("div", { cls: "empty", text: "no turns" }));
    M.note("dialogue", M.plural((row.history || []).length, "turn"));
    M.fill("output-body",
      el("h3", { text: "output" }), el("pre", { cls: "block", id: "task-output", text: pretty(row.output) }),
      row.metrics && Object.keys(row.metrics).length ? [el("h3", { text: "metrics" }), el("pre", { cls: "block", text: pretty(row.metrics) })] : null,
      el("details", null, el("summary", { text: "seed" }), el("pre", { cls: "block", text: pretty(row.seed) })),
      el("details", null, el("summary", { text: "provenance" }), el("pre", { cls: "block", text: pretty(row.provenance) })));
  }

  M.views.task = {
    enter: function (root) {
      root.append(el("section", { id: "task" }, el("div", { id: "task-head" }, el("span", { cls: "dim", text: "loading..." }))),
        M.section("dialogue", "Dialogue", el("div", { id: "dialogue-body" })),
        M.section("output", "Output", el("div", { id: "output-body" })));
    },
    draw: function (root, route) {
      var path = "/v1/jobs/" + encodeURIComponent(route.job) + "/tasks/" + encodeURIComponent(route.task);
      return Promise.all([M.api(path, null, { nullOn404: true }), M.api("/v1/cluster")]).then(function (r) {
        var row = r[0];
        draw(route, row);
        M.summary(r[1]);
        // A row never changes: only a task still without one is asked again.
        return row ? 3600000 : 3000;
      });
    },
  };
})();

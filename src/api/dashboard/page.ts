import { createHash } from "node:crypto";
import uplotJs from "uplot/dist/uPlot.iife.min.js" with { type: "text" };
import uplotCss from "uplot/dist/uPlot.min.css" with { type: "text" };
import clusterJs from "./cluster.js" with { type: "text" };
import coreJs from "./core.js" with { type: "text" };
import jobJs from "./job.js" with { type: "text" };
import appCss from "./style.css" with { type: "text" };
import taskJs from "./task.js" with { type: "text" };

/**
 * The dashboard: one page, its script, its styles and the chart library
 * (uPlot, from npm) imported as text, so `bun build --compile` embeds them
 * and the page asks for nothing but this node's own API: it works on an
 * air-gapped cluster. The script routes in the page (`#/`, `#/jobs/ID`,
 * `#/jobs/ID/tasks/TASK`).
 *
 * The page holds no data, so it is served without the token; its script
 * asks for the token the first time the API answers 401 and keeps it in
 * sessionStorage. Its Content-Security-Policy allows only the inline
 * script (by hash), inline styles and requests to this origin, so the
 * browser itself refuses anything else.
 */
const SCRIPT = [uplotJs, coreJs, clusterJs, jobJs, taskJs, "window.matrixd.start();"].join("\n;\n");
const STYLE = `${uplotCss}\n${appCss}`;

function sha256(text: string): string {
  return `'sha256-${createHash("sha256").update(text).digest("base64")}'`;
}

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>matrixd</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1><a href="#/">matrixd</a></h1>
  <span id="summary" class="dim">loading...</span>
  <span id="error"></span>
  <span class="grow"></span>
  <button id="set-token" type="button" hidden>set token</button>
  <span id="updated" class="dim"></span>
</header>
<main id="view"></main>
<script>${SCRIPT}</script>
</body>
</html>
`;

/** The page's Content-Security-Policy: its own inline script and styles, requests to this node only. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  // Not by hash: uPlot and the page size things through style attributes, which a hash would forbid.
  "style-src 'unsafe-inline'",
  "connect-src 'self'",
  "img-src 'self' data: blob:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** The page's icon (browsers ask for /favicon.ico on their own): a small mark, so the ask is not a 404 or a 401. */
export const DASHBOARD_ICON =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#2a5db0"/><path d="M3 12V4l5 5 5-5v8" stroke="#fff" stroke-width="2" fill="none"/></svg>';

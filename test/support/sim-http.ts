/** Small HTTP helpers shared by the sim-llm tests. */

export interface Completion {
  choices: {
    message: { content: string | null; tool_calls?: { id: string; function: { name: string; arguments: string } }[] };
    finish_reason: string;
  }[];
  usage: { prompt_tokens: number; completion_tokens: number; prompt_tokens_details?: { cached_tokens: number } };
}

export function post(url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    ...init,
  });
}

/** Posts and returns the parsed completion, failing on a non-200 status. */
export async function complete(url: string, body: unknown): Promise<Completion> {
  const res = await post(url, body);
  if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
  return (await res.json()) as Completion;
}

/** The sum of every series of a metric (optionally only those whose labels include `labels`). */
export async function metric(url: string, name: string, labels = ""): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return metricFrom(text, name, labels);
}

export function metricFrom(text: string, name: string, labels = ""): number {
  let sum = 0;
  let found = false;
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const brace = line.indexOf("{");
    const series = brace >= 0 ? line.slice(0, brace) : line.split(" ")[0];
    if (series !== name || !line.includes(labels)) continue;
    found = true;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  if (!found) throw new Error(`no metric ${name}${labels ? ` with ${labels}` : ""}`);
  return sum;
}

/** The `data:` payloads of an SSE body. */
export function sseData(text: string): string[] {
  return text
    .split("\n\n")
    .map((block) => block.trim())
    .filter((block) => block.startsWith("data: "))
    .map((block) => block.slice(6));
}

export const wordCount = (s: string): number => s.split(/\s+/).filter((w) => w.length > 0).length;

import type { ToolSpec } from "../../src/llm/types.ts";
import { PLAN_NAMES } from "./domain.ts";
import libSh from "./env/lib.sh" with { type: "text" };
import rewardSh from "./env/reward.sh" with { type: "text" };
import changePlanSh from "./env/tools/change_plan.sh" with { type: "text" };
import disableRoamingSh from "./env/tools/disable_roaming.sh" with { type: "text" };
import enableRoamingSh from "./env/tools/enable_roaming.sh" with { type: "text" };
import findAccountSh from "./env/tools/find_account_by_phone.sh" with { type: "text" };
import getAccountSh from "./env/tools/get_account.sh" with { type: "text" };
import getUsageSh from "./env/tools/get_usage.sh" with { type: "text" };
import listPlansSh from "./env/tools/list_plans.sh" with { type: "text" };
import makePaymentSh from "./env/tools/make_payment.sh" with { type: "text" };
import refuelDataSh from "./env/tools/refuel_data.sh" with { type: "text" };
import transferSh from "./env/tools/transfer_to_human_agents.sh" with { type: "text" };

/**
 * The tools the assistant may call: their OpenAI JSON schemas, and the
 * scripts that run them inside the task's environment (env/tools/NAME.sh,
 * arguments as key=value lines on stdin, a JSON result on stdout).
 */

const accountId = { type: "string", pattern: "^A\\d{4}$", description: "the account id, A and four digits, e.g. A1042" };

function tool(name: string, description: string, properties: Record<string, unknown> = {}, required: string[] = []): ToolSpec {
  return { type: "function", function: { name, description, parameters: { type: "object", properties, required, additionalProperties: false } } };
}

/** The tools offered to the assistant, in the order it sees them. */
export const TOOL_SPECS: readonly ToolSpec[] = [
  tool("find_account_by_phone", "Find the account id and holder's name for a phone number.", {
    phone: { type: "string", pattern: "^\\d{3}-\\d{4}$", description: "the phone number, e.g. 555-0142" },
  }, ["phone"]),
  tool("get_account", "Get an account: holder, phone, plan, status (active or suspended), roaming (on or off) and balance owed.", { account_id: accountId }, ["account_id"]),
  tool("get_usage", "Get this month's data use of an account: allowance, used, refuelled and remaining megabytes.", { account_id: accountId }, ["account_id"]),
  tool("list_plans", "List the plans with their data allowance, monthly price and whether they include roaming."),
  tool("change_plan", "Move an active account to another plan. A plan without roaming turns roaming off.", {
    account_id: accountId,
    plan: { type: "string", enum: [...PLAN_NAMES], description: "the new plan" },
  }, ["account_id", "plan"]),
  tool("enable_roaming", "Turn roaming on. The account must be active and its plan must include roaming.", { account_id: accountId }, ["account_id"]),
  tool("disable_roaming", "Turn roaming off.", { account_id: accountId }, ["account_id"]),
  tool("make_payment", "Pay towards the balance owed. Paying the whole balance reactivates a suspended account.", {
    account_id: accountId,
    amount: { type: "number", exclusiveMinimum: 0, description: "the amount, at most two decimals, no more than the balance" },
  }, ["account_id", "amount"]),
  tool("refuel_data", "Add 1 to 10 GB of data to this month's allowance of an active account, at 2.00 per GB added to the balance.", {
    account_id: accountId,
    gb: { type: "integer", minimum: 1, maximum: 10, description: "gigabytes to add" },
  }, ["account_id", "gb"]),
  tool("transfer_to_human_agents", "Hand the customer over to a human agent when you cannot help. The conversation ends.", {
    summary: { type: "string", description: "what the customer wants and why you cannot do it" },
  }, ["summary"]),
];

/** The tool that ends the conversation with the assistant giving up. */
export const GIVE_UP_TOOL = "transfer_to_human_agents";

const TOOL_SCRIPTS: Record<string, string> = {
  change_plan: changePlanSh,
  disable_roaming: disableRoamingSh,
  enable_roaming: enableRoamingSh,
  find_account_by_phone: findAccountSh,
  get_account: getAccountSh,
  get_usage: getUsageSh,
  list_plans: listPlansSh,
  make_payment: makePaymentSh,
  refuel_data: refuelDataSh,
  transfer_to_human_agents: transferSh,
};

/** True when `name` is one of the domain's tools. */
export function isTool(name: string): boolean {
  return Object.hasOwn(TOOL_SCRIPTS, name);
}

/** Path of a tool's script under the tools folder. */
export function toolScript(toolsDir: string, name: string): string {
  return `${toolsDir}/tools/${name}.sh`;
}

/** Path of the reward script under the tools folder. */
export function rewardScript(toolsDir: string): string {
  return `${toolsDir}/reward.sh`;
}

/** Every script as a file of the work folder, for environments whose image does not carry them. */
export function scriptFiles(toolsDir: string): Record<string, string> {
  const files: Record<string, string> = { [`${toolsDir}/lib.sh`]: libSh, [rewardScript(toolsDir)]: rewardSh };
  for (const [name, text] of Object.entries(TOOL_SCRIPTS)) files[toolScript(toolsDir, name)] = text;
  return files;
}

/**
 * A tool call's JSON arguments as the key=value lines a script reads, or
 * what is wrong with them. Only flat objects of strings, numbers and
 * booleans pass; a value with a line break would smuggle in another key.
 */
export function argumentLines(json: string): { ok: true; stdin: string } | { ok: false; error: string } {
  let args: unknown;
  try {
    args = JSON.parse(json === "" ? "{}" : json);
  } catch {
    return { ok: false, error: `arguments are not valid JSON: ${json.slice(0, 200)}` };
  }
  if (typeof args !== "object" || args === null || Array.isArray(args)) return { ok: false, error: "arguments must be a JSON object" };
  const lines: string[] = [];
  for (const [key, value] of Object.entries(args)) {
    if (!/^[a-z_][a-z0-9_]{0,40}$/.test(key)) return { ok: false, error: `bad argument name "${key.slice(0, 40)}"` };
    if (value === null) continue;
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
      return { ok: false, error: `argument "${key}" must be a string, number or boolean` };
    }
    const text = String(value);
    if (/[\r\n\0]/.test(text)) return { ok: false, error: `argument "${key}" must be on one line` };
    lines.push(`${key}=${text}`);
  }
  return { ok: true, stdin: lines.length ? `${lines.join("\n")}\n` : "" };
}

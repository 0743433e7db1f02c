import { pick, uniform } from "../hash.ts";
import { fnv1a } from "../../util/hash.ts";
import { messageText } from "../request.ts";
import { spacedJson } from "./schema.ts";
import { lastTextOfRole, type Skill, type SkillAnswer, type SkillInput } from "./types.ts";
import { isRecord } from "../../util/record.ts";

/**
 * The tool-use workflow's two LLM roles (plugins/tool-use/prompts.ts):
 * - the customer states the request its instructions give, answers the
 *   agent's questions, and sends the stop token once the agent reports
 *   success, hands over, or its patience runs out;
 * - the agent identifies the account, reads the customer's wishes from the
 *   conversation and calls the domain's tools in a sensible order with
 *   arguments taken from the conversation (account ids, plan names from the
 *   tool's enum, amounts), reports when everything is done, now and then
 *   calls badly (at `badToolCallRate`: unknown tool, broken JSON, missing or
 *   wrong arguments) and sometimes gives up, so every branch runs; in a
 *   share of conversations it also misreads the request (another plan, a
 *   wrong amount, the second of two wishes forgotten), which the reward
 *   catches.
 */

export const CUSTOMER_MARK = "You are playing a customer of Mobile Co.";
export const AGENT_MARK = "You are a customer service agent for Mobile Co.";

const SALT_PATIENCE = 601;
const SALT_MORE = 602;
const SALT_BAD = 610;
const SALT_BAD_KIND = 611;
const SALT_GIVE_UP = 612;
const SALT_AFTER_ERRORS = 613;
const SALT_SLOPPY = 614;
const SALT_SLOPPY_KIND = 615;

/** Chance, at each decision after the first, that the agent hands over at once. */
const GIVE_UP_RATE = 0.02;
/** Share of conversations in which the agent gets the request itself wrong, for a reward below 1. */
const SLOPPY_RATE = 0.25;

function systemText(input: SkillInput): string | undefined {
  const i = input.body.messages.findIndex((m) => m.role === "system" || m.role === "developer");
  return i < 0 ? undefined : input.texts[i];
}

function lineAfter(text: string, label: string): string | undefined {
  const at = text.indexOf(label);
  if (at < 0) return undefined;
  const end = text.indexOf("\n", at);
  return text.slice(at + label.length, end < 0 ? undefined : end).trim();
}

export const customerSkill: Skill = {
  name: "tool-use-customer",
  answer(input) {
    const system = systemText(input);
    if (!system?.startsWith(CUSTOMER_MARK)) return undefined;
    const stop = /end your message with (\S+)/.exec(system)?.[1] ?? "###STOP###";
    const opening = lineAfter(system, "Start with something like:") ?? "Hi, I need help with my account.";
    const own = input.body.messages.filter((m) => m.role === "assistant").length;
    if (own === 0) return { kind: "exact", text: opening };
    const patience = 4 + pick(fnv1a(system), SALT_PATIENCE, 5);
    const agent = (lastTextOfRole(input, "user") ?? "").toLowerCase();
    const say = (text: string): SkillAnswer => ({ kind: "exact", text });
    if (/human agent|transfer/.test(agent)) return say(`Alright, thank you. ${stop}`);
    if (/anything else|all done/.test(agent)) {
      return uniform(input.hash, SALT_MORE) < 0.9 ? say(`No, that's all. Thank you! ${stop}`) : say("Thanks. Can you confirm that everything went through?");
    }
    if (own >= patience) return say(`I have to go now, thanks anyway. ${stop}`);
    if (/account id|phone number|identify/.test(agent)) {
      const id = lineAfter(system, "Your account id:");
      const phone = lineAfter(system, "Your phone number:") ?? "";
      return say(id ? `Sure, my account id is ${id}.` : `I don't know my account id, but my phone number is ${phone}.`);
    }
    if (/sorry|could not|couldn't|unable/.test(agent)) return say(`Let me try again: ${opening}`);
    return say("Yes, please go ahead.");
  },
};

/** One tool call the agent made earlier in the conversation, with its result. */
interface PastCall {
  name: string;
  args: Record<string, unknown>;
  result?: string;
  ok?: boolean;
}

function parseObject(text: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(text);
    return isRecord(v) ? v : {};
  } catch {
    return {};
  }
}

function pastCalls(input: SkillInput): PastCall[] {
  const byId = new Map<string, PastCall>();
  const calls: PastCall[] = [];
  input.body.messages.forEach((m, i) => {
    if (m.role === "assistant") {
      for (const c of m.tool_calls ?? []) {
        const call: PastCall = { name: c.function.name, args: parseObject(c.function.arguments) };
        calls.push(call);
        if (c.id) byId.set(c.id, call);
      }
    } else if (m.role === "tool" && m.tool_call_id) {
      const call = byId.get(m.tool_call_id);
      if (call) {
        call.result = input.texts[i] ?? messageText(m);
        call.ok = !call.result.startsWith('{"error"');
      }
    }
  });
  return calls;
}

/** One thing the customer asked for: the call that does it and how to say it is done. */
interface Intent {
  tool: string;
  args: Record<string, unknown>;
  label: string;
  /** a call that must succeed first (get_account to learn the balance) */
  needs?: string;
}

function planEnum(input: SkillInput): string[] {
  const tool = input.body.tools?.find((t) => t.function.name === "change_plan");
  const props = tool?.function.parameters?.properties as Record<string, { enum?: unknown[] }> | undefined;
  return (props?.plan?.enum ?? []).filter((x): x is string => typeof x === "string");
}

function intentsOf(said: string, account: string, plans: string[], calls: PastCall[]): Intent[] {
  const out: Intent[] = [];
  const s = said.toLowerCase();
  if (/\bpay\b|payment/.test(s)) {
    const amount = /pay\s+\$?(\d+(?:\.\d{1,2})?)/.exec(s)?.[1];
    if (amount) out.push({ tool: "make_payment", args: { account_id: account, amount: Number(amount) }, label: `paid ${amount}` });
    else {
      const info = calls.findLast((c) => c.name === "get_account" && c.ok);
      const balance = info ? (parseObject(info.result ?? "").account as { balance?: number } | undefined)?.balance : undefined;
      if (balance === undefined) out.push({ tool: "make_payment", args: {}, label: "paid the balance", needs: "get_account" });
      else if (balance > 0) out.push({ tool: "make_payment", args: { account_id: account, amount: balance }, label: `paid the balance of ${balance.toFixed(2)}` });
    }
  }
  const planWords = plans.join("|");
  const plan = planWords ? new RegExp(`\\b(?:switch|change|move|upgrade|downgrade)\\w*\\b[^.]*?\\b(${planWords})\\b`).exec(s)?.[1] : undefined;
  if (plan) out.push({ tool: "change_plan", args: { account_id: account, plan }, label: `moved you to the ${plan} plan` });
  const off = /(?:turn|switch) off roaming|(?:disable|deactivate|stop) roaming|roaming off/.test(s);
  if (off) out.push({ tool: "disable_roaming", args: { account_id: account }, label: "turned roaming off" });
  else if (/roaming/.test(s) && /turn(?:ed)? on|enable|activate|abroad|trip/.test(s)) {
    out.push({ tool: "enable_roaming", args: { account_id: account }, label: "turned roaming on" });
  }
  const gb = /(?:add|refuel|top up)\s+(\d+)\s*gb/.exec(s)?.[1];
  if (gb) out.push({ tool: "refuel_data", args: { account_id: account, gb: Number(gb) }, label: `added ${gb} GB of data` });
  if (/how much data|data (?:do i have )?left|usage/.test(s)) out.push({ tool: "get_usage", args: { account_id: account }, label: "looked up your data" });
  return out;
}

/**
 * The customer's wishes as a careless agent reads them: one mistake per
 * conversation, fixed by the conversation's opening and account.
 */
function misread(intents: Intent[], key: number, plans: string[]): Intent[] {
  if (uniform(key, SALT_SLOPPY) >= SLOPPY_RATE) return intents;
  const kind = pick(key, SALT_SLOPPY_KIND, 3);
  let changed = false;
  const out = intents.map((i) => {
    if (kind === 1 && i.tool === "change_plan") {
      changed = true;
      const other = plans[(plans.indexOf(String(i.args.plan)) + 1) % plans.length] ?? String(i.args.plan);
      return { ...i, args: { ...i.args, plan: other }, label: `moved you to the ${other} plan` };
    }
    if (kind === 2 && i.tool === "make_payment" && typeof i.args.amount === "number" && i.args.amount > 1) {
      changed = true;
      const amount = Math.floor(i.args.amount) - 1;
      return { ...i, args: { ...i.args, amount }, label: `paid ${amount.toFixed(2)}` };
    }
    return i;
  });
  // Otherwise the last wish is forgotten: the agent reports success without doing it.
  return changed ? out : out.slice(0, -1);
}

function isDone(intent: Intent, calls: PastCall[]): boolean {
  return calls.some((c) => c.ok && c.name === intent.tool && (intent.tool !== "change_plan" || c.args.plan === intent.args.plan));
}

/** A call, or at `badToolCallRate` a broken version of it. */
function call(input: SkillInput, name: string, args: Record<string, unknown>): SkillAnswer {
  const h = input.hash;
  if (uniform(h, SALT_BAD) >= input.options.badToolCallRate) return { kind: "tool", name, arguments: spacedJson(args) };
  switch (pick(h, SALT_BAD_KIND, 4)) {
    case 0:
      return { kind: "tool", name: "cancel_account", arguments: spacedJson(args) };
    case 1:
      return { kind: "tool", name, arguments: spacedJson(args).slice(0, -1) };
    case 2: {
      const { account_id: _a, phone: _p, ...rest } = args;
      return { kind: "tool", name, arguments: spacedJson(rest) };
    }
    default: {
      const wrong: Record<string, unknown> = { ...args };
      if (typeof args.account_id === "string") wrong.account_id = args.account_id.slice(1);
      if ("plan" in args) wrong.plan = "premium";
      if ("amount" in args) wrong.amount = -5;
      if ("gb" in args) wrong.gb = 50;
      if ("phone" in args) wrong.phone = "5550";
      return { kind: "tool", name, arguments: spacedJson(wrong) };
    }
  }
}

function say(text: string): SkillAnswer {
  return { kind: "text", final: text };
}

const ASK_ACCOUNT = "To help you I need to identify your account. Could you give me your account id, or the phone number on the account?";

export const agentSkill: Skill = {
  name: "tool-use-agent",
  answer(input) {
    if (!systemText(input)?.startsWith(AGENT_MARK) || !input.body.tools?.length) return undefined;
    const h = input.hash;
    const calls = pastCalls(input);
    const userTexts = input.body.messages.flatMap((m, i) => (m.role === "user" ? [input.texts[i] ?? ""] : []));
    const said = userTexts.join("\n");
    if (userTexts.length > 1 && uniform(h, SALT_GIVE_UP) < GIVE_UP_RATE) {
      return call(input, "transfer_to_human_agents", { summary: "the customer needs help I cannot give" });
    }
    const found = calls.findLast((c) => c.name === "find_account_by_phone" && c.ok);
    const account = /\bA\d{4}\b/.exec(said)?.[0] ?? (found ? String(parseObject(found.result ?? "").account_id ?? "") : "");
    if (!account) {
      const phone = /\b\d{3}-\d{4}\b/.exec(said)?.[0];
      const tries = calls.filter((c) => c.name === "find_account_by_phone" && !c.ok).length;
      return phone && tries < 2 ? call(input, "find_account_by_phone", { phone }) : say(ASK_ACCOUNT);
    }
    // Look the account up before changing it: the policy's first step, and it tells the balance.
    if (!calls.some((c) => c.name === "get_account" && c.ok)) return call(input, "get_account", { account_id: account });
    const plans = planEnum(input);
    const wished = intentsOf(said, account, plans, calls);
    if (wished.length === 0) return say("I have your account open. What would you like me to do?");
    const intents = misread(wished, fnv1a(account, fnv1a(userTexts[0] ?? "")), plans);
    const next = intents.find((i) => !isDone(i, calls));
    if (!next) {
      const done = intents.length ? intents.map((i) => i.label).join(", and ") : "checked your account";
      const usage = calls.findLast((c) => c.name === "get_usage" && c.ok);
      const left = usage ? ` You have ${String(parseObject(usage.result ?? "").remaining_mb ?? "?")} MB of data left this month.` : "";
      return say(`All done: I ${done}.${left} Is there anything else I can help you with?`);
    }
    if (next.needs && !calls.some((c) => c.name === next.needs && c.ok)) return call(input, next.needs, { account_id: account });
    const failed = calls.filter((c) => c.name === next.tool && c.ok === false);
    if (failed.length >= 2) {
      if (uniform(h, SALT_AFTER_ERRORS) < 0.5) return call(input, "transfer_to_human_agents", { summary: `${next.tool} keeps failing` });
      const why = parseObject(failed[failed.length - 1]?.result ?? "").error;
      return say(`I'm sorry, I could not do that: ${String(why ?? "the system refused")}.`);
    }
    return call(input, next.tool, next.args);
  },
};

/** The two roles' skills, in registry order. */
export const toolUseSkills: readonly Skill[] = [customerSkill, agentSkill];

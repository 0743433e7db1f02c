import type { ChatMessage } from "../../src/llm/types.ts";
import type { TaskView } from "../../src/plugin/api.ts";
import type { Turn } from "../../src/protocol/task.ts";
import type { Scenario } from "./domain.ts";

/**
 * What the two LLM roles see: the customer's instructions and the agent's
 * policy, and the conversation from each side. The first sentence of each
 * system prompt is also what the simulated model keys on
 * (src/sim/skills/tool-use.ts), so change both together.
 */

/** The agent's fixed first line: the customer answers it. */
export const GREETING = "Hello, thank you for contacting Mobile Co. support. How can I help you today?";

export function userSystem(s: Scenario, stopToken: string): string {
  const c = s.customer;
  return [
    "You are playing a customer of Mobile Co., a mobile phone company, chatting with its support agent. Write only what the customer writes, one message at a time.",
    `Your name: ${c.name}`,
    `Your phone number: ${c.phone}`,
    c.knows_account_id ? `Your account id: ${c.account_id}` : "You do not know your account id.",
    `Your goal: ${s.goal}`,
    `Start with something like: ${s.opening}`,
    "Give the agent the details it asks for when you have them; never make up others. Do not tell everything at once.",
    `When your goal is done, or when it cannot be done, thank the agent and end your message with ${stopToken}`,
  ].join("\n");
}

export const ASSISTANT_SYSTEM = [
  "You are a customer service agent for Mobile Co., a mobile phone company. Help the customer with their account using the tools.",
  "Policy:",
  "- Identify the account first: ask for the account id, or for the phone number on the account and look it up.",
  "- A suspended account must pay its whole balance before any other change.",
  "- Roaming needs a plan that includes it; do not change a plan unless the customer agrees to the new one.",
  "- Refuels are 1 to 10 GB, at 2.00 per GB added to the balance.",
  "- Do only what the customer asks for, and tell them what you did.",
  "- If you cannot help, transfer the customer to a human agent.",
].join("\n");

/** True when a customer message ends the conversation. */
export function hasStop(text: string, stopToken: string): boolean {
  return text.includes(stopToken);
}

/** The conversation as the customer sees it: the agent's words as `user`, its own as `assistant`. */
export function userMessages(state: Pick<TaskView, "history">, system: string): ChatMessage[] {
  const messages: ChatMessage[] = [
    { role: "system", content: system },
    { role: "user", content: GREETING },
  ];
  for (const t of state.history) {
    if (t.role === "user") messages.push({ role: "assistant", content: t.text });
    else if (t.role === "assistant" && t.text.trim() !== "") messages.push({ role: "user", content: t.text });
  }
  return messages;
}

/** The conversation as the agent sees it, tool calls and results included. */
export function assistantMessages(state: Pick<TaskView, "history">): ChatMessage[] {
  const messages: ChatMessage[] = [
    { role: "system", content: ASSISTANT_SYSTEM },
    { role: "assistant", content: GREETING },
  ];
  for (const t of state.history) messages.push(...agentView(t));
  return messages;
}

function agentView(t: Turn): ChatMessage[] {
  switch (t.role) {
    case "user":
      return [{ role: "user", content: t.text }];
    case "assistant": {
      const calls = t.toolCalls ?? [];
      if (calls.length === 0) return [{ role: "assistant", content: t.text }];
      return [
        {
          role: "assistant",
          content: t.text === "" ? null : t.text,
          tool_calls: calls.map((c) => ({ id: c.id, type: "function" as const, function: { name: c.name, arguments: c.arguments } })),
        },
      ];
    }
    case "tool":
      return [{ role: "tool", content: t.text, tool_call_id: t.toolCallId ?? "" }];
    default:
      return [];
  }
}

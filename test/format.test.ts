import { describe, expect, test } from "bun:test";
import { membersTable } from "../src/api/format.ts";
import type { Member } from "../src/protocol/member.ts";

const member: Member = {
  node: "n1",
  version: "1",
  roles: {
    "coral.teacher": { slots: 64, busy: 3, queued: 1 },
    "coral.student": { slots: 64, busy: 2, queued: 0 },
    "tool-use.agent": { slots: 64, busy: 0, queued: 0 },
    "reasoning-extract.filter": { slots: 64, busy: 0, queued: 0 },
  },
  groups: { llm: { slots: 16, busy: 5 } },
  services: { llm: [] },
  startedAt: 0,
  seenAt: 0,
  state: "running",
};

describe("format", () => {
  test("format - the members table shows the shared LLM slots and, with live jobs, only their workflows' roles", () => {
    const all = membersTable([member], 1000);
    expect(all).toContain("llm slots (shared): 5/16");
    expect(all).toContain("coral: student 2/64, teacher 3/64 +1");
    expect(all).toContain("tool-use: agent 0/64");
    const live = membersTable([member], 1000, new Set(["coral"]));
    expect(live).toContain("coral: student 2/64, teacher 3/64 +1");
    expect(live).not.toContain("tool-use");
    expect(live).toContain("2 workflows with no live job");
  });
});

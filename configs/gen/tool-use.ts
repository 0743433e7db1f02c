/**
 * Writes the tool-use seed set: customer scenarios of a mobile operator
 * (plan changes, roaming on and off, payments, data refuels, usage
 * questions, and requests that need two actions in order), each with the
 * account database before and the database expected after, from a fixed
 * random seed.
 *
 *   bun configs/gen/tool-use.ts [COUNT] [OUT]   (default 60 configs/seeds/tool-use.jsonl)
 */
import { writeFileSync } from "node:fs";
import { type Account, type Db, PLANS, type PlanName, REFUEL_PRICE, ScenarioSchema } from "../../plugins/tool-use/domain.ts";
import { seededRandom } from "../../src/util/hash.ts";

const rand = seededRandom(20251127);
const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
const money = (lo: number, hi: number) => int(lo * 2, hi * 2) / 2;

const FIRST = ["Ana", "Ben", "Carla", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jamal", "Kira", "Liam", "Mei", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq"];
const LAST = ["Diaz", "Okafor", "Novak", "Patel", "Schmidt", "Rossi", "Kim", "Haddad", "Larsen", "Moreau", "Silva", "O'Brien", "Tanaka", "Walsh", "Young"];
const ROAMING_PLANS = PLANS.filter((p) => p.roaming).map((p) => p.name as PlanName);
const HOME_PLANS = PLANS.filter((p) => !p.roaming).map((p) => p.name as PlanName);
const ALL_PLANS = PLANS.map((p) => p.name as PlanName);

/** What a kind of request does to the database, and how the customer says it. */
interface Request {
  kind: string;
  goal: string;
  opening: string;
  /** the customer's account before the request */
  prepare(a: Account): void;
  /** the expected database after it */
  apply(db: Db, a: Account): void;
}

function pay(db: Db, a: Account, amount: number): void {
  const n = db.payments.length + 1;
  db.payments.push({ payment_id: `P${String(n).padStart(4, "0")}`, account_id: a.account_id, amount });
  a.balance = Math.round((a.balance - amount) * 100) / 100;
  if (a.balance === 0 && a.status === "suspended") a.status = "active";
}

function request(): Request {
  switch (int(0, 8)) {
    case 0: {
      const to = pick(ALL_PLANS);
      return {
        kind: "change-plan",
        goal: `You want to switch your mobile plan to the ${to} plan. You do not want any other change to your account.`,
        opening: `Hi, I'd like to switch my plan to ${to}.`,
        prepare: (a) => {
          a.status = "active";
          a.plan = pick(ALL_PLANS.filter((p) => p !== to));
          if (!ROAMING_PLANS.includes(a.plan)) a.roaming = false;
        },
        apply: (_db, a) => {
          a.plan = to;
          if (!ROAMING_PLANS.includes(to)) a.roaming = false;
        },
      };
    }
    case 1:
      return {
        kind: "roaming-on",
        goal: "You are travelling abroad next week and want roaming turned on for your line. Nothing else.",
        opening: "Hello, I'm travelling abroad next week. Can you turn on roaming for my line?",
        prepare: (a) => Object.assign(a, { status: "active", plan: pick(ROAMING_PLANS), roaming: false }),
        apply: (_db, a) => {
          a.roaming = true;
        },
      };
    case 2:
      return {
        kind: "roaming-needs-plan",
        goal: "You are going on a trip abroad and need roaming. Your plan may not include it: in that case you agree to switch to the travel plan, and to nothing else.",
        opening: "Hi, I'm going on a trip abroad and need roaming turned on. If my plan has no roaming, I'm fine switching to the travel plan.",
        prepare: (a) => Object.assign(a, { status: "active", plan: pick(HOME_PLANS), roaming: false }),
        apply: (_db, a) => Object.assign(a, { plan: "travel", roaming: true }),
      };
    case 3:
      return {
        kind: "roaming-off",
        goal: "You are back home and want roaming turned off on your line.",
        opening: "Hi, please turn off roaming on my phone, I'm back home.",
        prepare: (a) => Object.assign(a, { plan: pick(ROAMING_PLANS), roaming: true }),
        apply: (_db, a) => {
          a.roaming = false;
        },
      };
    case 4:
      return {
        kind: "pay-full",
        goal: "Your line was suspended for an unpaid bill. You want to pay the whole balance so that it works again.",
        opening: "Hi, my line was suspended. I want to pay my full balance so it works again.",
        prepare: (a) => Object.assign(a, { status: "suspended", balance: money(20, 150) }),
        apply: (db, a) => pay(db, a, a.balance),
      };
    case 5: {
      const amount = money(10, 40);
      return {
        kind: "pay-part",
        goal: `You want to pay ${amount.toFixed(2)} towards your bill today, not more.`,
        opening: `Hello, I'd like to pay ${amount.toFixed(2)} towards my bill.`,
        prepare: (a) => Object.assign(a, { status: "active", balance: amount + money(5, 80) }),
        apply: (db, a) => pay(db, a, amount),
      };
    }
    case 6: {
      const gb = int(1, 5);
      return {
        kind: "refuel",
        goal: `You are almost out of mobile data this month and want ${gb} GB added. You accept the charge of ${REFUEL_PRICE.toFixed(2)} per GB.`,
        opening: `Hi, I'm almost out of data. Please add ${gb} GB to my plan this month.`,
        prepare: (a) => {
          a.status = "active";
        },
        apply: (db, a) => {
          const u = db.usage.find((x) => x.account_id === a.account_id);
          if (u) u.refuel_mb += gb * 1024;
          a.balance = Math.round((a.balance + gb * REFUEL_PRICE) * 100) / 100;
        },
      };
    }
    case 7:
      return {
        kind: "usage-question",
        goal: "You only want to know how much mobile data you have left this month. You do not want any change to your account.",
        opening: "Hi, how much data do I have left this month?",
        prepare: () => {},
        apply: () => {},
      };
    default:
      return {
        kind: "pay-then-roaming",
        goal: "You need roaming for a trip. Your account is suspended, so you will pay the whole balance first, then have roaming turned on.",
        opening: "Hello, I need roaming turned on for a trip, and I know my account is suspended, so I'll pay my full balance first.",
        prepare: (a) => Object.assign(a, { status: "suspended", balance: money(15, 90), plan: pick(ROAMING_PLANS), roaming: false }),
        apply: (db, a) => {
          pay(db, a, a.balance);
          a.roaming = true;
        },
      };
  }
}

function account(i: number, used: Set<string>): Account {
  let phone: string;
  do phone = `555-0${int(100, 999)}`;
  while (used.has(phone));
  used.add(phone);
  const plan = pick(ALL_PLANS);
  return {
    account_id: `A${1000 + i * 1500 + int(0, 1499)}`,
    name: `${pick(FIRST)} ${pick(LAST)}`,
    phone,
    plan,
    status: rand() < 0.15 ? "suspended" : "active",
    roaming: ROAMING_PLANS.includes(plan) && rand() < 0.4,
    balance: rand() < 0.5 ? 0 : money(5, 60),
  };
}

function scenario(n: number): Record<string, unknown> {
  const phones = new Set<string>();
  const accounts = Array.from({ length: int(3, 6) }, (_, i) => account(i, phones));
  const me = pick(accounts);
  const req = request();
  req.prepare(me);
  const db: Db = {
    accounts,
    usage: accounts.map((a) => {
      const limit = (PLANS.find((p) => p.name === a.plan)?.dataGb ?? 5) * 1024;
      return { account_id: a.account_id, used_mb: int(Math.floor(limit * 0.3), limit), refuel_mb: rand() < 0.2 ? 1024 : 0 };
    }),
    payments: [],
  };
  for (let k = int(0, 2); k > 0; k--) {
    db.payments.push({ payment_id: `P${String(db.payments.length + 1).padStart(4, "0")}`, account_id: pick(accounts).account_id, amount: money(10, 60) });
  }
  const expected = structuredClone(db);
  const mine = expected.accounts.find((a) => a.account_id === me.account_id) as Account;
  req.apply(expected, mine);
  const seed = {
    id: `tu-${String(n + 1).padStart(3, "0")}`,
    kind: req.kind,
    customer: { name: me.name, phone: me.phone, account_id: me.account_id, knows_account_id: rand() < 0.7 },
    goal: req.goal,
    opening: req.opening,
    db,
    expected,
  };
  ScenarioSchema.parse(seed);
  return seed;
}

const count = Number(process.argv[2] ?? 60);
const out = process.argv[3] ?? new URL("../seeds/tool-use.jsonl", import.meta.url).pathname;
const lines = Array.from({ length: count }, (_, i) => JSON.stringify(scenario(i)));
writeFileSync(out, `${lines.join("\n")}\n`);
console.log(`wrote ${count} scenarios to ${out}`);

import { z } from "zod";

/**
 * The customer-service domain: a mobile operator's accounts, plans, data
 * usage and payments. A scenario carries the account database as the task
 * starts and as it should end; inside the environment each table is a
 * tab-separated file with a header line (db/accounts.tsv...), which the tool
 * scripts read and rewrite with awk.
 */

/** One plan of the catalogue. */
export interface Plan {
  name: string;
  dataGb: number;
  price: number;
  roaming: boolean;
}

/** The plan catalogue, the same for every scenario. */
export const PLANS: readonly Plan[] = [
  { name: "basic", dataGb: 5, price: 20, roaming: false },
  { name: "standard", dataGb: 15, price: 35, roaming: false },
  { name: "plus", dataGb: 30, price: 50, roaming: true },
  { name: "travel", dataGb: 10, price: 45, roaming: true },
  { name: "unlimited", dataGb: 200, price: 75, roaming: true },
];
export const PLAN_NAMES = ["basic", "standard", "plus", "travel", "unlimited"] as const;
export type PlanName = (typeof PLAN_NAMES)[number];

/** What one GB of refuelled data costs. */
export const REFUEL_PRICE = 2;

const AccountId = z.string().regex(/^A\d{4}$/, "must be A and four digits");
const Phone = z.string().regex(/^\d{3}-\d{4}$/, "must look like 555-0142");
/** Money with at most two decimals, as the tools write it. */
const Money = z.number().nonnegative().refine((n) => Math.abs(n * 100 - Math.round(n * 100)) < 1e-6, "at most two decimals");

export const AccountSchema = z.strictObject({
  account_id: AccountId,
  // Letters, spaces, dots, apostrophes and dashes only: the tools print names into JSON unescaped.
  name: z.string().regex(/^[A-Za-z][A-Za-z .'-]{0,60}$/, "letters, spaces and . ' - only"),
  phone: Phone,
  plan: z.enum(PLAN_NAMES),
  status: z.enum(["active", "suspended"]),
  roaming: z.boolean(),
  balance: Money,
});
export type Account = z.infer<typeof AccountSchema>;

export const UsageSchema = z.strictObject({
  account_id: AccountId,
  used_mb: z.number().int().nonnegative(),
  refuel_mb: z.number().int().nonnegative(),
});
export type Usage = z.infer<typeof UsageSchema>;

export const PaymentSchema = z.strictObject({
  payment_id: z.string().regex(/^P\d{4}$/, "must be P and four digits"),
  account_id: AccountId,
  amount: Money.refine((n) => n > 0, "must be above 0"),
});
export type Payment = z.infer<typeof PaymentSchema>;

/** The account database of one scenario. */
export const DbSchema = z.strictObject({
  accounts: z.array(AccountSchema).min(1),
  usage: z.array(UsageSchema),
  payments: z.array(PaymentSchema),
});
export type Db = z.infer<typeof DbSchema>;

/** One customer scenario: who calls, what they want, and the database before and after. */
export const ScenarioSchema = z
  .looseObject({
    id: z.union([z.string(), z.number()]).optional(),
    customer: z.strictObject({
      name: z.string().min(1),
      phone: Phone,
      account_id: AccountId,
      /** false: the customer only knows their phone number */
      knows_account_id: z.boolean().default(true),
    }),
    /** instructions for the LLM playing the customer, in the second person */
    goal: z.string().min(1),
    /** the customer's first message, as the scenario suggests it */
    opening: z.string().min(1),
    db: DbSchema,
    expected: DbSchema,
  })
  .superRefine((s, ctx) => {
    if (!s.db.accounts.some((a) => a.account_id === s.customer.account_id)) {
      ctx.addIssue({ code: "custom", path: ["customer", "account_id"], message: `${s.customer.account_id} is not in db.accounts` });
    }
  });
export type Scenario = z.infer<typeof ScenarioSchema>;

function tsv(header: string[], rows: string[][]): string {
  return [header, ...rows].map((r) => r.join("\t")).join("\n") + "\n";
}

/** The database as the tables the tool scripts read, by file name. */
export function dbFiles(db: Db, dir: string, withPlans: boolean): Record<string, string> {
  const files: Record<string, string> = {
    [`${dir}/accounts.tsv`]: tsv(
      ["account_id", "name", "phone", "plan", "status", "roaming", "balance"],
      db.accounts.map((a) => [a.account_id, a.name, a.phone, a.plan, a.status, a.roaming ? "on" : "off", a.balance.toFixed(2)]),
    ),
    [`${dir}/usage.tsv`]: tsv(
      ["account_id", "used_mb", "refuel_mb"],
      db.usage.map((u) => [u.account_id, String(u.used_mb), String(u.refuel_mb)]),
    ),
    [`${dir}/payments.tsv`]: tsv(
      ["payment_id", "account_id", "amount"],
      db.payments.map((p) => [p.payment_id, p.account_id, p.amount.toFixed(2)]),
    ),
  };
  if (withPlans) {
    files[`${dir}/plans.tsv`] = tsv(
      ["plan", "data_gb", "price", "roaming"],
      PLANS.map((p) => [p.name, String(p.dataGb), p.price.toFixed(2), p.roaming ? "yes" : "no"]),
    );
  }
  return files;
}

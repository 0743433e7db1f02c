/**
 * The fixed vocabulary of the simulated model's filler reasoning and of the
 * words it makes up for tool arguments. Fixed, so answers are reproducible.
 */
export const FILLER_WORDS: readonly string[] = (
  "first let us consider the question carefully and check each step " +
  "we know that this means the value follows from what was given so " +
  "looking again at the options one of them must match our result while " +
  "the others do not because each term changes the total in a different way " +
  "therefore thinking about it more the simplest reading is also the most " +
  "likely one here since nothing suggests otherwise and we can verify it by " +
  "working backwards from the answer to the premises which gives the same " +
  "number again however it is worth noting an alternative view where the " +
  "order of operations matters then multiplication comes before addition " +
  "in any case the reasoning holds if we assume the usual rules apply and " +
  "no hidden trick is involved hence after a second look our conclusion " +
  "stays the same overall given all of this the evidence points one way " +
  "clearly step by step compare count recall estimate confirm refine"
).split(" ");

/** Plain nouns used when a tool argument needs a made-up word. */
export const ARG_WORDS: readonly string[] = (
  "alpha bravo paris london tokyo order invoice refund blue green small " +
  "large north south report ticket account basic premium monday friday " +
  "apple river stone cloud update status delta harbor"
).split(" ");

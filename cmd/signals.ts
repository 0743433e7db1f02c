/**
 * The one owner of SIGINT and SIGTERM in the command line. The first signal
 * asks the command to stop its own way (`graceful`); a second one exits at
 * once with code 130, after `forced` has said so.
 */
export interface SignalHandlers {
  graceful: (signal: NodeJS.Signals) => void;
  forced?: (signal: NodeJS.Signals) => void;
}

/** Listen for SIGINT and SIGTERM; returns the function that stops listening. */
export function handleSignals(h: SignalHandlers): () => void {
  let seen = 0;
  const on = (signal: NodeJS.Signals): void => {
    seen++;
    if (seen === 1) {
      h.graceful(signal);
      return;
    }
    h.forced?.(signal);
    process.exit(130);
  };
  process.on("SIGINT", on);
  process.on("SIGTERM", on);
  return () => {
    process.off("SIGINT", on);
    process.off("SIGTERM", on);
  };
}

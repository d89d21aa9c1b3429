/**
 * Things for people on stderr: a spinner while waiting (only on a terminal),
 * opening the browser. Heavy modules load only when used.
 */
import type { Deps } from './deps.js';

/** Shows `text` with a spinner on a terminal, or as one plain line otherwise; returns the stop function. */
export function waitingIndicator(text: string, deps: Deps): () => void {
  if (!deps.io.stderrIsTTY || deps.debug || deps.env['CI']) {
    deps.io.stderr.write(`${text}\n`);
    return () => {};
  }
  let stopped = false;
  let spinner: { stop(): void } | undefined;
  void import('ora').then(({ default: ora }) => {
    if (stopped) return;
    spinner = ora({ text, stream: deps.io.stderr as NodeJS.WriteStream, discardStdin: false }).start();
  });
  return () => {
    stopped = true;
    spinner?.stop();
  };
}

/** Opens a URL in the user's default browser. */
export async function openBrowser(url: string): Promise<void> {
  const { default: open } = await import('open');
  const child = await open(url, { wait: false });
  child.on('error', () => {});
}

/**
 * Node labels: the one rule for a label name, shared by the server config
 * (`nodes[].labels`, role `node_labels`) and the node agent's join and
 * heartbeat messages (api/schema.ts), so a joined node's labels can be
 * everything a static node's can, and nothing else.
 */

/** A label name: letters, digits, "-", "_", "." and "/", starting with a letter or digit, at most 253. */
export const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9_./-]{0,252})?$/;

/** True for a valid label name (LABEL_KEY). */
export function isLabelName(text: string): boolean {
  return LABEL_KEY.test(text);
}

import { UsageError } from '../errors.js';
import { parseDuration } from '../shared/duration.js';
import { isLabelName } from '../shared/labels.js';

/** Parses a duration flag, turning a bad value into a usage error that names the flag. */
export function flagDuration(flag: string, value: string): number {
  try {
    return parseDuration(value, flag);
  } catch (err) {
    throw new UsageError('USAGE_BAD_DURATION', `${flag}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * TSH_CLOCK_LEEWAY: how far a certificate's start may lie in this machine's
 * future (its clock behind) before tsh calls it not valid yet. A duration
 * (`5m`, `30s`) or `0`; default DEFAULT_CLOCK_LEEWAY_SECONDS (5 minutes).
 */
export function clockLeewaySeconds(env: Record<string, string | undefined>, fallback: number): number {
  const v = env['TSH_CLOCK_LEEWAY']?.trim();
  if (v === undefined || v === '') return fallback;
  if (v === '0') return 0;
  try {
    return parseDuration(v, 'TSH_CLOCK_LEEWAY');
  } catch (err) {
    throw new UsageError('USAGE_BAD_DURATION', `TSH_CLOCK_LEEWAY: ${(err as Error).message}`, { cause: err, hint: 'e.g. TSH_CLOCK_LEEWAY=5m, or unset it for the default (5m)' });
  }
}

/** Most labels a --labels flag may give (the API's MAX_NODE_LABELS). */
export const MAX_FLAG_LABELS = 32;

/**
 * Parses `--labels=k=v,k2=v2` (label names as in the config: shared/labels.ts;
 * values printable, at most 256 characters) into a mapping.
 * @throws UsageError USAGE_BAD_LABELS naming the flag and the bad item
 */
export function parseLabels(flag: string, value: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (value.trim() === '') return out;
  for (const item of value.split(',')) {
    const eq = item.indexOf('=');
    const k = eq < 0 ? item.trim() : item.slice(0, eq).trim();
    const v = eq < 0 ? '' : item.slice(eq + 1).trim();
    if (!isLabelName(k) || !/^[ -~]{1,256}$/.test(v)) {
      throw new UsageError('USAGE_BAD_LABELS', `${flag}: ${JSON.stringify(item)} is not name=value (names: letters, digits, "-", "_", "." and "/"; values: printable, 1 to 256 characters)`, {
        hint: `e.g. ${flag}=env=prod,rack=r12`,
      });
    }
    out[k] = v;
  }
  if (Object.keys(out).length > MAX_FLAG_LABELS) throw new UsageError('USAGE_BAD_LABELS', `${flag}: more than ${MAX_FLAG_LABELS} labels`);
  return out;
}

import { UsageError } from '../errors.js';
import { parseDuration } from '../shared/duration.js';

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

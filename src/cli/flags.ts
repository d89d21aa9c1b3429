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

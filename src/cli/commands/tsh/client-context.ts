import { DEFAULT_CLOCK_LEEWAY_SECONDS } from '../../../client/credentials.js';
import type { Deps } from '../../deps.js';
import { clockLeewaySeconds } from '../../flags.js';
import { tshProgram } from '../../ui.js';

/** What tsh commands pass to credentialsFor: how hints run tsh, and the clock leeway (TSH_CLOCK_LEEWAY). */
export function credentialOptions(deps: Deps): { program: string; leewaySeconds: number } {
  return { program: tshProgram(deps), leewaySeconds: clockLeewaySeconds(deps.env, DEFAULT_CLOCK_LEEWAY_SECONDS) };
}

/**
 * SANDBOX_ISOLATION and SANDBOX_NETWORK (issue 14), parsed by config.ts. Both fail closed:
 * - SANDBOX_ISOLATION: `required` (default) or `off`. `off` runs steps as plain processes with no
 *   jail at all, so it is honoured only when set explicitly, and start-up then logs a loud warning.
 *   The old `auto` (jail when possible, else silently unjailed) is read as `required`, with a
 *   deprecation warning: a host that cannot jail now refuses to start instead of running unjailed.
 * - SANDBOX_NETWORK: `egress` (default: the internet through a user-mode stack, nothing of the host
 *   or its private networks) or `off` (no network at all). The old booleans stay accepted with a
 *   deprecation warning: `true` → `egress` (it used to share the host's network: strictly more),
 *   `false` → `off` (unchanged meaning).
 */

export type IsolationSetting = 'required' | 'off';
export type NetworkSetting = 'egress' | 'off';

export interface ParsedSetting<T> {
  value: T;
  /** A deprecation notice for the start-up log. */
  warning?: string;
}

export const ISOLATION_OFF_WARNING =
  'SANDBOX_ISOLATION=off: steps run as plain processes WITHOUT any jail — code from any thread can read ' +
  "the controller's environment (Slack and OpenAI keys), every thread's files and the host's network. " +
  'Use only on a single-user development machine.';

export function parseIsolationSetting(raw: string | undefined): ParsedSetting<IsolationSetting> | string {
  const value = raw?.trim().toLowerCase() ?? '';
  if (value === '' || value === 'required') return { value: 'required' };
  if (value === 'off') return { value: 'off' };
  if (value === 'auto') {
    return {
      value: 'required',
      warning: 'SANDBOX_ISOLATION=auto is deprecated and now means required (steps never run unjailed by accident); set required, or off explicitly',
    };
  }
  return `SANDBOX_ISOLATION must be required or off (got "${raw}")`;
}

export function parseNetworkSetting(raw: string | undefined): ParsedSetting<NetworkSetting> | string {
  const value = raw?.trim().toLowerCase() ?? '';
  if (value === '' || value === 'egress') return { value: 'egress' };
  if (value === 'off') return { value: 'off' };
  if (['true', '1', 'yes', 'on'].includes(value)) {
    return { value: 'egress', warning: `SANDBOX_NETWORK=${raw} is deprecated: it now means egress (internet only, never the host's network); write egress` };
  }
  if (['false', '0', 'no'].includes(value)) {
    return { value: 'off', warning: `SANDBOX_NETWORK=${raw} is deprecated: write off` };
  }
  return `SANDBOX_NETWORK must be egress or off (got "${raw}")`;
}

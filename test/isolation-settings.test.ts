import { describe, expect, test } from 'vitest';
import { parseIsolationSetting, parseNetworkSetting } from '../controller/sandbox/local/isolation-settings.js';

// Issue 14, findings 5 and 6: both settings fail closed; the old values keep working with a notice.

describe('SANDBOX_ISOLATION', () => {
  test('defaults to required; off only when written; auto now means required', () => {
    expect(parseIsolationSetting(undefined)).toStrictEqual({ value: 'required' });
    expect(parseIsolationSetting('')).toStrictEqual({ value: 'required' });
    expect(parseIsolationSetting('required')).toStrictEqual({ value: 'required' });
    expect(parseIsolationSetting('off')).toStrictEqual({ value: 'off' });
    const auto = parseIsolationSetting('auto');
    expect(auto).toMatchObject({ value: 'required', warning: expect.stringMatching(/auto is deprecated and now means required/) });
    expect(parseIsolationSetting('maybe')).toBe('SANDBOX_ISOLATION must be required or off (got "maybe")');
  });
});

describe('SANDBOX_NETWORK', () => {
  test('defaults to egress; the old booleans map to egress and off with a notice', () => {
    expect(parseNetworkSetting(undefined)).toStrictEqual({ value: 'egress' });
    expect(parseNetworkSetting('off')).toStrictEqual({ value: 'off' });
    expect(parseNetworkSetting('true')).toMatchObject({ value: 'egress', warning: expect.stringMatching(/never the host's network/) });
    expect(parseNetworkSetting('false')).toMatchObject({ value: 'off', warning: expect.stringMatching(/deprecated/) });
    expect(parseNetworkSetting('host')).toBe('SANDBOX_NETWORK must be egress or off (got "host")');
  });
});

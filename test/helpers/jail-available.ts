import { spawnSync } from 'node:child_process';
import { SeccompFilter } from '../../controller/sandbox/local/seccomp-filter.js';

/**
 * SANDBOX_ISOLATION for tests that exercise the sandbox in whatever jail this machine allows:
 * `required` where bubblewrap runs and the seccomp filter builds, else `off` (a CI container without
 * user namespaces still runs these tests, unjailed; the jail's own tests are skipped there).
 */
export function jailIfAvailable(): 'required' | 'off' {
  const bwrap = spawnSync('bwrap', ['--ro-bind', '/', '/', '--unshare-pid', '--unshare-net', 'true'], { timeout: 10_000 });
  return bwrap.status === 0 && typeof SeccompFilter.build() !== 'string' ? 'required' : 'off';
}

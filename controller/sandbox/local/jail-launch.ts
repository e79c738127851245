import { spawn, type ChildProcess, type StdioNull, type StdioPipe } from 'node:child_process';
import type { Writable } from 'node:stream';
import type { SandboxUser } from './sandbox-user.js';
import type { JailSlot } from './jail-slots.js';
import type { SeccompFilter } from './seccomp-filter.js';

/**
 * Starts one jailed process (issue 14) as a chain of small execs, each doing one thing before the
 * next starts, so that no instruction of the jailed command runs outside any protection:
 *
 *   sh (joins the slot's cgroup) → nsenter (the slot's network namespace, with egress)
 *     → bwrap (mount/pid/ipc/uts namespaces, --seccomp from fd 5, capabilities dropped)
 *     → setpriv (drop-root mode: the thread's uid, every capability set and the bounding set emptied)
 *     → the command.
 *
 * Without egress bwrap makes an empty network namespace itself (--unshare-net); the jail never
 * shares the host's. A launch that would is refused.
 */

/** The fd bwrap reads the seccomp program from (stdio index in the child). */
const SECCOMP_FD = 5;

export interface JailLaunchOptions {
  /** bwrap's arguments up to the command (bubblewrapArguments()). */
  bubblewrapArgs: string[];
  command: string;
  args: string[];
  slot: JailSlot;
  /** drop-root mode: the uid/gid setpriv switches to. */
  dropTo?: SandboxUser;
  seccomp?: SeccompFilter;
  /** Host file shown read-only at /etc/resolv.conf (egress: the stack's DNS forwarder). */
  resolvConf?: string;
  stdio: [StdioPipe | StdioNull, StdioPipe | StdioNull, StdioPipe | StdioNull];
  env: Record<string, string>;
  /** Own process group (so a tree can be signalled at once). */
  detached?: boolean;
}

/** The full command line: the chain of wrappers around bwrap. */
function jailCommand(options: JailLaunchOptions): { command: string; args: string[] } {
  const base = [...options.bubblewrapArgs];
  const sharesHostNetwork = options.slot.network === undefined && !base.includes('--unshare-net');
  if (sharesHostNetwork) throw new Error('refusing to start a jail in the host network namespace');
  if (options.slot.network !== undefined && base.includes('--unshare-net')) {
    base.splice(base.indexOf('--unshare-net'), 1); // the slot's namespace is the jail's
  }
  const extra: string[] = [];
  if (options.seccomp !== undefined) extra.push('--seccomp', String(SECCOMP_FD));
  // setpriv empties the bounding set, which needs CAP_SETPCAP. bwrap applies --cap-add/--cap-drop in
  // order, so this must come after the base's --cap-drop ALL (before it, it would be dropped again).
  if (options.dropTo !== undefined && base.includes('--cap-drop')) base.push('--cap-add', 'CAP_SETPCAP');
  // Mounts after --remount-ro / could not create their mount point: insert them before it.
  if (options.resolvConf !== undefined) {
    const remount = base.indexOf('--remount-ro');
    base.splice(remount < 0 ? base.length : remount, 0, '--ro-bind', options.resolvConf, '/etc/resolv.conf');
  }
  // bwrap makes a missing parent 0700 root, and setpriv drops before the runner is opened from /opt/runner:
  // /opt is made first, traversable.
  const firstMount = base.findIndex((argument) => ['--perms', '--dir', '--ro-bind', '--bind', '--symlink'].includes(argument));
  base.splice(firstMount < 0 ? base.length : firstMount, 0, '--perms', '0755', '--dir', '/opt');

  const inner =
    options.dropTo === undefined
      ? [options.command, ...options.args]
      : [
          '/usr/bin/setpriv',
          `--reuid=${options.dropTo.uid}`,
          `--regid=${options.dropTo.gid}`,
          '--clear-groups',
          '--inh-caps=-all',
          '--bounding-set=-all',
          '--no-new-privs',
          '--',
          options.command,
          ...options.args,
        ];
  let command = { command: 'bwrap', args: [...extra, ...base, ...inner] };
  if (options.slot.network !== undefined) command = options.slot.network.enterCommand(command.command, command.args);
  if (options.slot.cgroup !== undefined) command = options.slot.cgroup.enterCommand(command.command, command.args);
  return command;
}

export function launchJail(options: JailLaunchOptions): ChildProcess {
  const { command, args } = jailCommand(options);
  const child = spawn(command, args, {
    env: options.env,
    detached: options.detached ?? true,
    stdio: [...options.stdio, 'ignore', 'ignore', options.seccomp === undefined ? 'ignore' : 'pipe'],
  });
  const filterPipe = (child.stdio as unknown as (Writable | null)[])[SECCOMP_FD];
  if (options.seccomp !== undefined && filterPipe !== null && filterPipe !== undefined) {
    // bwrap reads the program until EOF; if it dies first the write fails, which its exit reports.
    filterPipe.on('error', () => {});
    filterPipe.end(options.seccomp.program);
  }
  return child;
}

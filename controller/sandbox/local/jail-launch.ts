import type { ChildProcess } from 'node:child_process';
import type { JailSlot } from './jail-slots.js';
import type { SandboxUser } from './sandbox-user.js';

/**
 * Starts one jailed process (issue 14) in a slot whose first process was made ahead (JailLauncher:
 * already in the slot's cgroup and, with egress, in its network namespace, the seccomp program waiting
 * on its fd 5). It execs, one step each, so that no instruction of the jailed command runs outside any
 * protection:
 *
 *   bwrap (mount/pid/ipc/uts namespaces, --seccomp 5, capabilities dropped)
 *     → setpriv (drop-root mode: the thread's uid, every capability set and the bounding set emptied)
 *     → the command.
 *
 * Without egress bwrap makes an empty network namespace itself (--unshare-net); the jail never
 * shares the host's. A launch that would is refused.
 */

export interface JailLaunchOptions {
  /** bwrap's arguments up to the command (bubblewrapArguments()). */
  bubblewrapArgs: string[];
  command: string;
  args: string[];
  slot: JailSlot;
  /** drop-root mode: the uid/gid setpriv switches to. */
  dropTo?: SandboxUser;
  /** Host file shown read-only at /etc/resolv.conf (egress: the stack's DNS forwarder). */
  resolvConf?: string;
}

/** bwrap's full argument list for the slot. */
function jailArguments(options: JailLaunchOptions): string[] {
  const base = [...options.bubblewrapArgs];
  if (!options.slot.egress && !base.includes('--unshare-net')) throw new Error('refusing to start a jail in the host network namespace');
  if (options.slot.egress && base.includes('--unshare-net')) base.splice(base.indexOf('--unshare-net'), 1); // the slot's namespace is the jail's
  const extra = options.slot.seccomp ? ['--seccomp', '5'] : [];
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
  return [...extra, ...base, ...inner];
}

/** The jail's process: the slot's launcher, now bwrap (stdin, stdout and stderr piped). */
export function launchJail(options: JailLaunchOptions): ChildProcess {
  return options.slot.launcher.exec('bwrap', jailArguments(options));
}

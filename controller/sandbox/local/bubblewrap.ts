import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readlinkSync, rmSync, chownSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PythonInfo } from './python.js';
import type { SandboxUser } from './sandbox-user.js';

/**
 * The bubblewrap jail of one local step (issue 5): the thread's workspace read-write at /workspace,
 * the runner read-only at /opt/runner, read-only system folders that Python and its libraries need,
 * a private /tmp, /proc and /dev, every namespace unshared (network shared only when enabled), a
 * clean environment, an unprivileged uid, and death of the whole tree with its parent.
 * Nothing else of the host is visible: no /root, no /home, no DATA_DIR, no controller files.
 */

export const JAIL_WORKSPACE = '/workspace';
export const JAIL_RUNNER_DIR = '/opt/runner';
const JAIL_UID = '1000';

/** Top-level folders of the system; on merged-/usr systems most are symlinks into /usr. */
const SYSTEM_PATHS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];

/**
 * The parts of /etc that Python, its libraries and the network stack read. Not passwd, shadow,
 * machine-id or the controller's own configuration.
 */
const ETC_ENTRIES = [
  'alternatives', 'ld.so.cache', 'ld.so.conf', 'ld.so.conf.d', 'ssl', 'ca-certificates', 'pki', 'crypto-policies',
  'fonts', 'matplotlibrc', 'localtime', 'timezone', 'mime.types', 'magic', 'magic.mime', 'mailcap',
  'resolv.conf', 'hosts', 'host.conf', 'nsswitch.conf', 'gai.conf', 'services', 'protocols', 'networks',
];

/**
 * `user-namespace`: bwrap creates a user namespace and the step runs as uid 1000 inside it (a
 * non-root controller; RLIMIT_NPROC is then counted per namespace). `drop-root`: a root controller
 * runs bwrap without a user namespace (so it can reach any DATA_DIR) with every capability dropped
 * but setuid/setgid, and runner.py drops to the thread's uid (`--user`) before running anything.
 */
export type JailMode = 'user-namespace' | 'drop-root';

export interface JailOptions {
  mode: JailMode;
  workspaceDir: string;
  runnerDir: string;
  python: PythonInfo;
  network: boolean;
  /** Size of the private /tmp (memory-backed). */
  tmpSizeMb: number;
  environment: Record<string, string>;
}

function systemBinds(): string[] {
  const args: string[] = [];
  for (const path of SYSTEM_PATHS) {
    let info;
    try {
      info = lstatSync(path);
    } catch {
      continue;
    }
    if (info.isSymbolicLink()) args.push('--symlink', readlinkSync(path), path);
    else if (info.isDirectory()) args.push('--ro-bind', path, path);
  }
  const etcNames = ETC_ENTRIES.concat(safeReaddir('/etc').filter((name) => /^python3(\.\d+)?$/.test(name)));
  for (const name of etcNames) args.push('--ro-bind-try', `/etc/${name}`, `/etc/${name}`);
  return args;
}

function safeReaddir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

let cachedSystemBinds: string[] | undefined;

/** bwrap's arguments up to (not including) the command to run inside. */
export function bubblewrapArguments(options: JailOptions): string[] {
  cachedSystemBinds ??= systemBinds();
  const args = [
    // Not --unshare-all in drop-root mode: it would add a user namespace, where the thread's uid is unmapped.
    '--unshare-ipc', '--unshare-pid', '--unshare-uts', '--unshare-cgroup-try',
    ...(options.network ? [] : ['--unshare-net']),
    ...(options.mode === 'user-namespace'
      ? ['--unshare-user', '--disable-userns', '--uid', JAIL_UID, '--gid', JAIL_UID]
      : ['--cap-drop', 'ALL', '--cap-add', 'CAP_SETUID', '--cap-add', 'CAP_SETGID']),
    '--hostname', 'sandbox',
    '--die-with-parent',
    '--new-session',
    // bwrap makes missing parents 0700 root: a dropped uid could not follow /etc/alternatives (numpy's libblas).
    '--perms', '0755', '--dir', '/etc',
    ...cachedSystemBinds,
  ];
  // An interpreter outside /usr (a virtualenv, pyenv) is shown read-only at its own path.
  for (const prefix of options.python.prefixes) {
    if (prefix !== '/' && !prefix.startsWith('/usr/') && prefix !== '/usr') args.push('--ro-bind', prefix, prefix);
  }
  args.push(
    '--proc', '/proc',
    '--dev', '/dev',
    '--perms', '1777',
    '--tmpfs', '/dev/shm',
    '--perms', '1777',
    '--size', String(options.tmpSizeMb * 1024 * 1024),
    '--tmpfs', '/tmp',
    '--bind', options.workspaceDir, JAIL_WORKSPACE,
    '--ro-bind', options.runnerDir, JAIL_RUNNER_DIR,
    // The jail's own skeleton (/, /etc, /opt) read-only too: only /workspace, /tmp and /dev/shm are writable.
    '--remount-ro', '/',
    // runner.py enters /workspace itself: as root without capabilities only the dropped uid may.
    '--chdir', '/',
    '--clearenv',
  );
  for (const [name, value] of Object.entries(options.environment)) args.push('--setenv', name, value);
  return args;
}

/**
 * Runs Python in a real jail of the given mode (dropping to `user` like runner.py does): returns
 * undefined when it works, else the reason. bwrap may be installed and still unusable (user
 * namespaces disabled, no CAP_SYS_ADMIN in a container), hence a real run rather than `bwrap --version`.
 */
export function probeBubblewrap(
  mode: JailMode,
  python: PythonInfo,
  runnerDir: string,
  user: SandboxUser | undefined,
  searchPath: string,
): string | undefined {
  const workspaceDir = mkdtempSync(join(tmpdir(), 'oi-bwrap-probe-'));
  try {
    if (user !== undefined) chownSync(workspaceDir, user.uid, user.gid);
    const args = bubblewrapArguments({
      mode,
      workspaceDir,
      runnerDir,
      python,
      network: false,
      tmpSizeMb: 16,
      environment: { PATH: '/usr/bin:/bin' },
    });
    const drop =
      user === undefined
        ? ''
        : `import os; os.setgroups([]); os.setresgid(${user.gid}, ${user.gid}, ${user.gid}); ` +
          `os.setresuid(${user.uid}, ${user.uid}, ${user.uid}); open('/workspace/probe', 'w').close(); `;
    const result = spawnSync('bwrap', [...args, python.executable, '-c', `${drop}print('ok')`], {
      encoding: 'utf8',
      timeout: 20_000,
      env: { PATH: searchPath },
    });
    if (result.error !== undefined) {
      return (result.error as NodeJS.ErrnoException).code === 'ENOENT' ? 'bwrap is not installed' : result.error.message;
    }
    if (result.status !== 0 || result.stdout.trim() !== 'ok') {
      return `bwrap failed: ${result.stderr.trim().split('\n').pop() ?? `exit status ${result.status}`}`;
    }
    return undefined;
  } finally {
    if (existsSync(workspaceDir)) rmSync(workspaceDir, { recursive: true, force: true });
  }
}

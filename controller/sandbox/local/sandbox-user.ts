import { createHash } from 'node:crypto';
import { chmod, lchown, lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The host uid a step runs as. The kernel does not enforce RLIMIT_NPROC for processes of host root,
 * so when the controller runs as root (containers, CI) runner.py is started as root (bubblewrap
 * then needs no user namespace and can reach any DATA_DIR) and drops to an unprivileged uid of its
 * own thread (`--user`; stable, derived from the workspace path, far above normal users) before it
 * runs anything else. The workspace is handed to that uid before the step. Two threads never share a uid (barring a hash collision), so
 * a fork bomb in one cannot eat another's process budget, and without bubblewrap a thread's files
 * (mode 0700) are not readable by another thread's code. A non-root controller runs steps as itself.
 */

export interface SandboxUser {
  uid: number;
  gid: number;
}

const FIRST_UID = 1_000_000;
const UID_COUNT = 1_000_000_000;

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** The uid for a workspace when the controller is root; undefined when steps run as the controller's user. */
export function sandboxUserFor(workspaceDir: string): SandboxUser | undefined {
  if (!isRoot()) return undefined;
  const digest = createHash('sha256').update(workspaceDir).digest();
  const uid = FIRST_UID + (digest.readUInt32BE(0) % UID_COUNT);
  return { uid, gid: uid };
}

/**
 * Gives the workspace tree to the sandbox user. Never follows symlinks and never touches a file with
 * more than one hard link: code could have linked a host file into its workspace, and chown as root
 * would then give that file away.
 */
export async function handOverWorkspace(root: string, user: SandboxUser): Promise<void> {
  const visit = async (path: string, isRootDirectory: boolean): Promise<void> => {
    let info;
    try {
      info = await lstat(path);
    } catch {
      return; // removed meanwhile
    }
    if (info.isSymbolicLink()) return;
    if (info.isDirectory()) {
      if (info.uid !== user.uid || info.gid !== user.gid) await lchown(path, user.uid, user.gid);
      if (isRootDirectory && (info.mode & 0o777) !== 0o700) await chmod(path, 0o700);
      const names = await readdir(path);
      for (const name of names) await visit(join(path, name), false);
      return;
    }
    if (info.isFile() && info.nlink === 1 && (info.uid !== user.uid || info.gid !== user.gid)) {
      await lchown(path, user.uid, user.gid);
    }
  };
  await visit(root, true);
}

/**
 * Kills every process of the sandbox uid (plain-process mode as root): processes that left the
 * step's process group (setsid, daemonised) die with the step too. Each thread has its own uid.
 */
export async function killProcessesOf(user: SandboxUser): Promise<number> {
  let killed = 0;
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if ((await lstat(`/proc/${name}`)).uid !== user.uid) continue;
      process.kill(Number(name), 'SIGKILL');
      killed += 1;
    } catch {
      // gone meanwhile
    }
  }
  return killed;
}

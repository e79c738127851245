import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REQUIRED_CONTROLLERS, type CgroupLayout } from './cgroup-layout.js';
import { SessionCgroup, type CgroupLimits, type SessionCgroupDirs } from './session-cgroup.js';

/**
 * The parent group of this controller's sandbox sessions: `oi-sandbox-<pid>-<n>` under the controller's
 * OWN cgroup in each hierarchy, so that whatever the host or container limits the controller to also
 * bounds its sandboxes, and two controllers on one host never share a group. Groups left by a
 * controller that died (its pid is gone) are killed and removed when the next one starts.
 *
 * cgroup v2 lets a group hand controllers to its children only when it holds no process itself
 * ("no internal processes", https://docs.kernel.org/admin-guide/cgroup-v2.html#no-internal-process-constraint).
 * When the controller's own group holds processes, they are moved into a leaf `oi-controller`
 * (as systemd recommends for delegated units and docker-in-docker does) — but only when the group is
 * this container's root or holds nothing but this process, its ancestors and its descendants.
 */

const PARENT_PREFIX = 'oi-sandbox-';
let instances = 0;

function isAlive(pid: number): boolean {
  return existsSync(`/proc/${pid}`);
}

function parentPid(pid: number): number | undefined {
  try {
    // Field 4 of /proc/<pid>/stat, after the parenthesised command name (which may contain spaces).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

function ancestry(pid: number): Set<number> {
  const chain = new Set<number>();
  for (let current: number | undefined = pid; current !== undefined && current > 0 && !chain.has(current); current = parentPid(current)) {
    chain.add(current);
  }
  return chain;
}

/** True when pid is this process, one of its ancestors or one of its descendants. */
function isFamily(pid: number, ownAncestry: Set<number>): boolean {
  return ownAncestry.has(pid) || ancestry(pid).has(process.pid);
}

function readProcs(dir: string): number[] {
  try {
    return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export class CgroupParent {
  private readonly sessions = new Set<SessionCgroup>();

  private constructor(
    private readonly layout: CgroupLayout,
    /** v2: one directory; v1: the parent directory in each controller's hierarchy. */
    private readonly dirs: Record<string, string>,
    /** What start-up had to do, for the start-up log line. */
    readonly notes: string[],
  ) {}

  /** Creates the parent group (throws with the reason when the hierarchy is not writable). */
  static prepare(layout: CgroupLayout): CgroupParent {
    const notes: string[] = [];
    // One parent per instance (a process may hold several sandboxes: tests, the benchmark).
    const name = `${PARENT_PREFIX}${process.pid}-${++instances}`;
    const ownDirs: Record<string, string> =
      layout.version === 2 ? { unified: layout.ownDir } : (layout.ownDirs as Record<string, string>);
    for (const ownDir of new Set(Object.values(ownDirs))) removeStaleParents(ownDir, notes);
    if (layout.version === 2) enableControllers(layout.ownDir, layout.isNamespaceRoot, notes);
    const dirs: Record<string, string> = {};
    for (const [controller, ownDir] of Object.entries(ownDirs)) {
      dirs[controller] = join(ownDir, name);
      mkdirSync(dirs[controller]!, { recursive: true });
    }
    if (layout.version === 2) writeFileSync(join(dirs.unified!, 'cgroup.subtree_control'), REQUIRED_CONTROLLERS.map((c) => `+${c}`).join(' '));
    return new CgroupParent(layout, dirs, notes);
  }

  get version(): 1 | 2 {
    return this.layout.version;
  }

  describe(): string {
    return this.layout.version === 2 ? `cgroup v2 (${this.dirs.unified})` : `cgroup v1 (${this.dirs.memory})`;
  }

  /** A new, empty group with the limits written. `name` must be unique among live sessions. */
  createSession(name: string, limits: CgroupLimits): SessionCgroup {
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new Error(`bad cgroup name ${name}`);
    let dirs: SessionCgroupDirs;
    if (this.layout.version === 2) {
      dirs = { version: 2, dir: join(this.dirs.unified!, name) };
      mkdirSync(dirs.dir);
    } else {
      const at = (controller: string) => (this.dirs[controller] === undefined ? undefined : join(this.dirs[controller]!, name));
      dirs = { version: 1, memory: at('memory')!, pids: at('pids')!, cpu: at('cpu')!, cpuacct: at('cpuacct'), freezer: at('freezer') };
      for (const dir of new Set([dirs.memory, dirs.pids, dirs.cpu, dirs.cpuacct, dirs.freezer])) {
        if (dir !== undefined && !existsSync(dir)) mkdirSync(dir);
      }
    }
    const group = SessionCgroup.configure(name, dirs, limits);
    this.sessions.add(group);
    return group;
  }

  /** Kills and removes a session's group. */
  async release(group: SessionCgroup): Promise<void> {
    this.sessions.delete(group);
    await group.destroy();
  }

  /** Kills every session and removes the parent group. */
  async close(): Promise<void> {
    await Promise.all([...this.sessions].map((group) => this.release(group)));
    await removeGroupTree(Object.values(this.dirs));
  }
}

function removeStaleParents(ownDir: string, notes: string[]): void {
  for (const entry of safeReaddir(ownDir)) {
    const match = new RegExp(`^${PARENT_PREFIX}(\\d+)(-\\d+)?$`).exec(entry);
    if (match === null || isAlive(Number(match[1]))) continue;
    void removeGroupTree([join(ownDir, entry)]);
    const note = `removed the sandbox cgroups of a controller that is gone (${entry})`;
    if (!notes.includes(note)) notes.push(note); // once, not once per v1 hierarchy
  }
}

/** Kills what is left in the groups under `dirs` (a dead controller's, or ours at close) and removes them. */
async function removeGroupTree(dirs: string[]): Promise<void> {
  for (const dir of new Set(dirs)) {
    for (const child of safeReaddir(dir).filter((entry) => existsSync(join(dir, entry, 'cgroup.procs')))) {
      const childDir = join(dir, child);
      const group = SessionCgroup.adopt(child, childDir);
      await group.destroy();
    }
    for (let attempt = 0; attempt < 50; attempt += 1) {
      if (SessionCgroup.adopt('parent', dir).remove()) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

function enableControllers(ownDir: string, isNamespaceRoot: boolean, notes: string[]): void {
  const control = join(ownDir, 'cgroup.subtree_control');
  const wanted = REQUIRED_CONTROLLERS.map((c) => `+${c}`).join(' ');
  try {
    writeFileSync(control, wanted);
    return;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EBUSY') throw error;
  }
  const own = ancestry(process.pid);
  const members = readProcs(ownDir);
  if (!isNamespaceRoot && !members.every((pid) => isFamily(pid, own))) {
    throw new Error(
      `${ownDir} holds other processes, so it cannot hand cgroup controllers to the sandboxes; run the controller ` +
        'in its own cgroup (a container, or a systemd unit with Delegate=yes)',
    );
  }
  const leaf = join(ownDir, 'oi-controller');
  mkdirSync(leaf, { recursive: true });
  for (const pid of members) {
    try {
      writeFileSync(join(leaf, 'cgroup.procs'), String(pid));
    } catch {
      // exited meanwhile
    }
  }
  notes.push(`moved the controller's processes into ${leaf} to delegate cgroup controllers`);
  writeFileSync(control, wanted);
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

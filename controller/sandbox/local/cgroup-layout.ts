import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Where this process sits in the cgroup hierarchies, read from /proc/self/cgroup and
 * /proc/self/mountinfo (issue 14). Pure parsing: the directories are only computed here;
 * cgroup-parent.ts creates the sandboxes' parent group and session-cgroup.ts the groups.
 *
 * Two layouts are supported:
 * - v2 (unified): one directory; usable when it offers the memory, pids and cpu controllers
 *   (production hosts: a cgroup2 mount at /sys/fs/cgroup).
 * - v1: one directory per controller (development and CI machines with v1 mounted read-write);
 *   memory, pids and cpu are needed, cpuacct (usage counters) and freezer (kill) are used when there.
 * A hybrid host (v2 mounted without controllers beside v1 ones) uses v1.
 * Reference: https://docs.kernel.org/admin-guide/cgroup-v2.html and
 * https://docs.kernel.org/admin-guide/cgroup-v1/cgroups.html ("/proc/<pid>/cgroup").
 */

export type CgroupV1Controller = 'memory' | 'pids' | 'cpu' | 'cpuacct' | 'freezer';
export const REQUIRED_CONTROLLERS = ['memory', 'pids', 'cpu'] as const;
const V1_CONTROLLERS: CgroupV1Controller[] = ['memory', 'pids', 'cpu', 'cpuacct', 'freezer'];

export type CgroupLayout =
  | { version: 2; ownDir: string; isNamespaceRoot: boolean }
  | { version: 1; ownDirs: Partial<Record<CgroupV1Controller, string>> };

interface Mount {
  /** Path inside the hierarchy that is mounted (not "/" when a container sees part of it without a cgroup namespace). */
  root: string;
  mountPoint: string;
  fsType: string;
  superOptions: string[];
}

/** mountinfo escapes spaces, tabs, newlines and backslashes as octal (proc(5)). */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_match, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

function parseMountInfo(text: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    const separator = line.indexOf(' - ');
    if (separator < 0) continue;
    const before = line.slice(0, separator).split(' ');
    const after = line.slice(separator + 3).split(' ');
    if (before.length < 5 || after.length < 3) continue;
    mounts.push({
      root: unescape(before[3]!),
      mountPoint: unescape(before[4]!),
      fsType: after[0]!,
      superOptions: after[2]!.split(','),
    });
  }
  return mounts;
}

/** The directory of cgroup `path` under a mount of its hierarchy, or undefined when the mount does not show it. */
function directoryIn(mount: Mount, path: string): string | undefined {
  if (mount.root === '/') return join(mount.mountPoint, path);
  if (path === mount.root) return mount.mountPoint;
  if (path.startsWith(`${mount.root}/`)) return join(mount.mountPoint, path.slice(mount.root.length));
  return undefined;
}

/**
 * The layout to use, or the reason there is none. `readControllers` returns the contents of a v2
 * directory's cgroup.controllers (injected so tests can describe any host).
 */
export function chooseCgroupLayout(
  procSelfCgroup: string,
  mountInfo: string,
  readControllers: (dir: string) => string | undefined,
): CgroupLayout | string {
  const mounts = parseMountInfo(mountInfo);
  const lines = procSelfCgroup
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const first = line.indexOf(':');
      const second = line.indexOf(':', first + 1);
      return { controllers: line.slice(first + 1, second), path: line.slice(second + 1) };
    });

  const unifiedLine = lines.find((line) => line.controllers === '');
  const unifiedMount = mounts.find((mount) => mount.fsType === 'cgroup2');
  const reasons: string[] = [];
  if (unifiedLine !== undefined && unifiedMount !== undefined) {
    const ownDir = directoryIn(unifiedMount, unifiedLine.path);
    const offered = ownDir === undefined ? undefined : readControllers(ownDir)?.trim().split(/\s+/);
    const missing = REQUIRED_CONTROLLERS.filter((name) => !(offered ?? []).includes(name));
    if (ownDir !== undefined && missing.length === 0) {
      return { version: 2, ownDir, isNamespaceRoot: unifiedLine.path === '/' };
    }
    reasons.push(`cgroup v2 at ${unifiedMount.mountPoint} lacks ${missing.join(', ')}`);
  }

  const ownDirs: Partial<Record<CgroupV1Controller, string>> = {};
  for (const line of lines) {
    if (line.controllers === '') continue;
    const names = line.controllers.split(',');
    const mount = mounts.find(
      (candidate) => candidate.fsType === 'cgroup' && names.every((name) => candidate.superOptions.includes(name)),
    );
    const dir = mount === undefined ? undefined : directoryIn(mount, line.path);
    if (dir === undefined) continue;
    for (const name of names) {
      if ((V1_CONTROLLERS as string[]).includes(name)) ownDirs[name as CgroupV1Controller] = dir;
    }
  }
  const missingV1 = REQUIRED_CONTROLLERS.filter((name) => ownDirs[name] === undefined);
  if (missingV1.length === 0) return { version: 1, ownDirs };
  reasons.push(`no cgroup v1 hierarchy for ${missingV1.join(', ')}`);
  return reasons.join('; ');
}

/** The layout of this process on this host, or the reason cgroups cannot be used. */
export function detectCgroupLayout(): CgroupLayout | string {
  let procSelfCgroup: string;
  let mountInfo: string;
  try {
    procSelfCgroup = readFileSync('/proc/self/cgroup', 'utf8');
    mountInfo = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch (error) {
    return `cannot read /proc/self/cgroup: ${(error as Error).message}`;
  }
  return chooseCgroupLayout(procSelfCgroup, mountInfo, (dir) => {
    try {
      return readFileSync(join(dir, 'cgroup.controllers'), 'utf8');
    } catch {
      return undefined;
    }
  });
}

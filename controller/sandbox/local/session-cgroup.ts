import { existsSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * One cgroup per sandbox session (issue 14): a memory limit that counts tmpfs and /dev/shm pages
 * (the kernel charges shmem to the cgroup that touched it, unlike RLIMIT_AS), no swap, a process
 * limit, an equal CPU weight so 32 busy processes of one thread cannot starve another, usage
 * counters for per-step accounting, and kill-the-group. v2: one directory; v1: one per controller.
 * Files: https://docs.kernel.org/admin-guide/cgroup-v2.html (memory.max, memory.swap.max,
 * memory.oom.group, pids.max, cpu.weight, cgroup.kill) and the v1 documents for memory
 * (memory.limit_in_bytes, memory.memsw.limit_in_bytes), pids, cpu (cpu.shares), cpuacct, freezer.
 */

export interface CgroupLimits {
  memoryBytes: number;
  maxProcesses: number;
  /** cgroup v2 scale (1..10000, default 100); v1 cpu.shares = weight × 1024 / 100. */
  cpuWeight: number;
}

export interface CgroupUsage {
  memoryBytes: number;
  /** Highest memory use since the group was made; undefined where the kernel has no counter. */
  memoryPeakBytes: number | undefined;
  /** CPU time of every process that ran in the group, in microseconds; undefined without cpuacct (v1). */
  cpuMicros: number | undefined;
  /** Processes the kernel's OOM killer killed in the group. */
  oomKills: number;
}

export type SessionCgroupDirs =
  | { version: 2; dir: string }
  | { version: 1; memory: string; pids: string; cpu: string; cpuacct?: string; freezer?: string };

const POLL_MS = 5;
const KILL_WAIT_MS = 3_000;

/**
 * Runs a command after moving itself into the group. Node cannot spawn straight into a cgroup
 * (no clone3 CLONE_INTO_CGROUP, no pre-exec hook), and moving a pid after spawn races with the
 * forks bwrap makes; this shell moves itself first, then execs, so everything it starts is inside.
 * Exit status 125 means the move failed (the command never ran).
 */
const ENTER_SCRIPT = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"';

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function readNumber(path: string): number | undefined {
  const text = readText(path);
  if (text === undefined) return undefined;
  const value = Number(text.trim());
  return Number.isFinite(value) ? value : undefined;
}

/** `key value` lines (memory.events, cpu.stat, memory.oom_control). */
function readKeyed(path: string, key: string): number | undefined {
  const match = new RegExp(`^${key} (\\d+)$`, 'm').exec(readText(path) ?? '');
  return match === null ? undefined : Number(match[1]);
}

function writeIfPresent(path: string, value: string): void {
  if (existsSync(path)) writeFileSync(path, value);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class SessionCgroup {
  private constructor(
    readonly name: string,
    readonly dirs: SessionCgroupDirs,
  ) {}

  /** Creates the group's directories (mkdir done by the caller) and writes the limits. */
  static configure(name: string, dirs: SessionCgroupDirs, limits: CgroupLimits): SessionCgroup {
    const group = new SessionCgroup(name, dirs);
    if (dirs.version === 2) {
      writeFileSync(join(dirs.dir, 'memory.max'), String(limits.memoryBytes));
      writeIfPresent(join(dirs.dir, 'memory.swap.max'), '0');
      // The whole group dies on OOM: no half-killed session whose tmpfs pages keep the group full.
      writeIfPresent(join(dirs.dir, 'memory.oom.group'), '1');
      writeFileSync(join(dirs.dir, 'pids.max'), String(limits.maxProcesses));
      writeFileSync(join(dirs.dir, 'cpu.weight'), String(limits.cpuWeight));
    } else {
      writeFileSync(join(dirs.memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
      // memsw counts memory + swap: equal to the memory limit means no swap (absent without swap accounting).
      writeIfPresent(join(dirs.memory, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes));
      writeFileSync(join(dirs.pids, 'pids.max'), String(limits.maxProcesses));
      writeFileSync(join(dirs.cpu, 'cpu.shares'), String(Math.max(2, Math.round((limits.cpuWeight * 1024) / 100))));
    }
    return group;
  }

  /**
   * A group found on disk (a dead controller's, or a parent being removed): only kill() and remove()
   * are meant for it. Treated as one directory: cgroup.kill where the kernel has it, else repeated kills.
   */
  static adopt(name: string, dir: string): SessionCgroup {
    return new SessionCgroup(name, { version: 2, dir });
  }

  /** The cgroup.procs files a process writes its pid to, to join the group. */
  get procsFiles(): string[] {
    if (this.dirs.version === 2) return [join(this.dirs.dir, 'cgroup.procs')];
    const unique = new Set([this.dirs.memory, this.dirs.pids, this.dirs.cpu, this.dirs.cpuacct, this.dirs.freezer]);
    return [...unique].filter((dir): dir is string => dir !== undefined).map((dir) => join(dir, 'cgroup.procs'));
  }

  /** `command args…` wrapped so that it runs inside the group from its first instruction. */
  enterCommand(command: string, args: string[]): { command: string; args: string[] } {
    return { command: '/bin/sh', args: ['-c', ENTER_SCRIPT, 'oi-cgroup-enter', ...this.procsFiles, '--', command, ...args] };
  }

  private get mainDir(): string {
    return this.dirs.version === 2 ? this.dirs.dir : this.dirs.memory;
  }

  /** Host pids of the processes in the group. */
  processes(): number[] {
    return (readText(join(this.mainDir, 'cgroup.procs')) ?? '')
      .split('\n')
      .filter((line) => line !== '')
      .map(Number);
  }

  usage(): CgroupUsage {
    if (this.dirs.version === 2) {
      const dir = this.dirs.dir;
      return {
        memoryBytes: readNumber(join(dir, 'memory.current')) ?? 0,
        memoryPeakBytes: readNumber(join(dir, 'memory.peak')),
        cpuMicros: readKeyed(join(dir, 'cpu.stat'), 'usage_usec'),
        oomKills: readKeyed(join(dir, 'memory.events'), 'oom_kill') ?? 0,
      };
    }
    const nanoseconds = this.dirs.cpuacct === undefined ? undefined : readNumber(join(this.dirs.cpuacct, 'cpuacct.usage'));
    return {
      memoryBytes: readNumber(join(this.dirs.memory, 'memory.usage_in_bytes')) ?? 0,
      memoryPeakBytes: readNumber(join(this.dirs.memory, 'memory.max_usage_in_bytes')),
      cpuMicros: nanoseconds === undefined ? undefined : Math.floor(nanoseconds / 1000),
      oomKills: readKeyed(join(this.dirs.memory, 'memory.oom_control'), 'oom_kill') ?? 0,
    };
  }

  /** Only the OOM kill count (one file: read after every warm session step). */
  oomKills(): number {
    return this.dirs.version === 2
      ? (readKeyed(join(this.dirs.dir, 'memory.events'), 'oom_kill') ?? 0)
      : (readKeyed(join(this.dirs.memory, 'memory.oom_control'), 'oom_kill') ?? 0);
  }

  /** SIGKILLs every process in the group and waits until it is empty (true) or the wait ran out (false). */
  async kill(): Promise<boolean> {
    if (!existsSync(this.mainDir)) return true; // removed already
    if (this.dirs.version === 2 && existsSync(join(this.dirs.dir, 'cgroup.kill'))) {
      writeFileSync(join(this.dirs.dir, 'cgroup.kill'), '1');
    } else if (this.dirs.version === 1 && this.dirs.freezer !== undefined) {
      await this.killFrozen(this.dirs.freezer);
    }
    // Without cgroup.kill or a freezer a fork can race one pass of kills: repeat until empty.
    const deadline = Date.now() + KILL_WAIT_MS;
    for (;;) {
      const remaining = this.processes();
      if (remaining.length === 0) return true;
      if (Date.now() > deadline) return false;
      for (const pid of remaining) killQuietly(pid);
      await sleep(POLL_MS);
    }
  }

  /** v1: freeze (no process can fork meanwhile), SIGKILL all, thaw so the kills are delivered. */
  private async killFrozen(freezerDir: string): Promise<void> {
    const state = join(freezerDir, 'freezer.state');
    if (!existsSync(state)) return;
    writeFileSync(state, 'FROZEN');
    const deadline = Date.now() + KILL_WAIT_MS;
    while (readText(state)?.trim() !== 'FROZEN' && Date.now() < deadline) await sleep(POLL_MS);
    for (const pid of (readText(join(freezerDir, 'cgroup.procs')) ?? '').split('\n').filter(Boolean)) killQuietly(Number(pid));
    writeFileSync(state, 'THAWED');
  }

  /** Removes the (empty) group's directories; false when one is still busy. */
  remove(): boolean {
    const dirs = this.dirs.version === 2 ? [this.dirs.dir] : [...new Set(this.procsFiles.map((file) => file.slice(0, -'/cgroup.procs'.length)))];
    let removed = true;
    for (const dir of dirs) {
      try {
        rmdirSync(dir);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') removed = false;
      }
    }
    return removed;
  }

  /** Kills and removes, retrying the removal while the kernel finishes tearing the processes down. */
  async destroy(): Promise<boolean> {
    await this.kill();
    for (let attempt = 0; attempt < 100; attempt += 1) {
      if (this.remove()) return true;
      await sleep(POLL_MS * 2);
    }
    return false;
  }
}

export function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone meanwhile
  }
}

import { statfsSync } from 'node:fs';
import { lstat, opendir } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The per-thread workspace quota (SANDBOX_WORKSPACE_MAX_MB, issue 14). Three parts:
 * - before a step: what the step may still write (`remainingBytes`): the quota minus what the
 *   workspace holds, and never more than the disk's free space minus a reserve kept for history and
 *   controller state (so that many threads, each within its quota, still cannot fill the disk that
 *   history lives on); the runner's RLIMIT_FSIZE is set to it, so no single file grows past it;
 * - during a step: a watcher that measures the workspace and ends the step once it crosses the quota
 *   (many files, each under RLIMIT_FSIZE) — it overshoots by at most what the step writes in one
 *   interval, never by gigabytes;
 * - around: one sentence for the model and the thread, and the same check for uploads
 *   (workspace/quota.ts, shared with the GCS store).
 * Sizes are allocated blocks (du), not apparent sizes: a sparse file costs what it uses on disk.
 */

export const DEFAULT_WORKSPACE_MAX_MB = 2048;
/** Disk space steps may never take (history, controller state, other threads' uploads). */
const DISK_RESERVE_BYTES = 512 * 1024 * 1024;
const MB = 1024 * 1024;

export interface WorkspaceUsage {
  bytes: number;
  entries: number;
}

/** Allocated bytes under dir (symlinks not followed, hard links counted once). */
export async function measureWorkspace(dir: string): Promise<WorkspaceUsage> {
  const seen = new Set<string>();
  let bytes = 0;
  let entries = 0;
  const visit = async (path: string): Promise<void> => {
    let directory;
    try {
      directory = await opendir(path);
    } catch {
      return; // removed meanwhile, or not a directory
    }
    for await (const entry of directory) {
      const child = join(path, entry.name);
      let info;
      try {
        info = await lstat(child, { bigint: false });
      } catch {
        continue;
      }
      entries += 1;
      if (info.nlink > 1 && !info.isDirectory()) {
        const key = `${info.dev}:${info.ino}`;
        if (seen.has(key)) continue;
        seen.add(key);
      }
      bytes += info.blocks * 512;
      if (info.isDirectory()) await visit(child);
    }
  };
  await visit(dir);
  return { bytes, entries };
}

/**
 * Free bytes on the filesystem holding path (for unprivileged users: what they may still write).
 * Synchronous on purpose: statfs is one quick system call, cheaper than a hop through libuv's thread
 * pool, and it runs before every warm step.
 */
export function freeDiskBytes(path: string): number {
  const info = statfsSync(path);
  return info.bavail * info.bsize;
}

/** What a step may still write: quota − usage, capped by the free disk minus the reserve; never negative. */
export function remainingBytes(options: { usedBytes: number; quotaBytes: number; freeBytes: number; reserveBytes?: number }): number {
  const byQuota = options.quotaBytes - options.usedBytes;
  const byDisk = options.freeBytes - (options.reserveBytes ?? DISK_RESERVE_BYTES);
  return Math.max(0, Math.min(byQuota, byDisk));
}

/** RLIMIT_FSIZE for the step in MB (the runner's unit): the per-file limit, or less when the quota is nearly used. */
export function stepFileLimitMb(maxFileMb: number, remaining: number): number {
  return Math.max(1, Math.min(maxFileMb, Math.floor(remaining / MB)));
}

/**
 * Measures a workspace while a step runs and calls onExceeded once when it holds more than
 * limitBytes. The pause between measurements grows with their cost (at most a third of the time
 * spent measuring), so a workspace of many small files cannot turn the watcher into a CPU hog.
 */
export class WorkspaceWatcher {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The last measurement (bytes). */
  lastBytes = 0;

  constructor(
    private readonly dir: string,
    private readonly limitBytes: number,
    private readonly onExceeded: (usedBytes: number) => void,
    private readonly intervalMs = 200,
  ) {}

  start(): this {
    this.schedule(this.intervalMs);
    return this;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.check(), delayMs);
    this.timer.unref();
  }

  private async check(): Promise<void> {
    const started = Date.now();
    const usage = await measureWorkspace(this.dir);
    if (this.stopped) return;
    this.lastBytes = usage.bytes;
    if (usage.bytes > this.limitBytes) {
      this.stopped = true;
      this.onExceeded(usage.bytes);
      return;
    }
    this.schedule(Math.max(this.intervalMs, 2 * (Date.now() - started)));
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
  }
}

import { lchown, lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { SandboxUser } from './sandbox-user.js';
import { freeDiskBytes, measureWorkspace, remainingBytes, stepFileLimitMb } from './workspace-quota.js';

/**
 * What one step may write (issue 14, workspace quota): RLIMIT_FSIZE for the runner and the size at
 * which the watcher ends the step. A workspace already over its quota (an upload, an older step) may
 * still run steps that free space: the watcher stops growth past the larger of the quota and the size
 * the step started with.
 */

export interface StepBudget {
  fileLimitMb: number;
  /** The workspace size that ends the step. */
  stopAtBytes: number;
  usedBytes: number;
}

const MB = 1024 * 1024;
/** Growth a step may make past a workspace that was already over quota (metadata, a small result). */
const OVER_QUOTA_SLACK = 1 * MB;

export async function stepBudget(workspaceDir: string, options: { quotaBytes: number; maxFileMb: number; usedBytes?: number }): Promise<StepBudget> {
  const usedBytes = options.usedBytes ?? (await measureWorkspace(workspaceDir)).bytes;
  const remaining = remainingBytes({ usedBytes, quotaBytes: options.quotaBytes, freeBytes: freeDiskBytes(workspaceDir) });
  return {
    fileLimitMb: stepFileLimitMb(options.maxFileMb, remaining),
    stopAtBytes: Math.max(options.quotaBytes, usedBytes + OVER_QUOTA_SLACK),
    usedBytes,
  };
}

/**
 * Gives the sandbox uid the workspace's top-level entries the controller wrote since the last step
 * (uploads land there). A warm session's step does not walk the whole tree (the session's start did):
 * files the runner made are its own already. Same rules as handOverWorkspace: no symlink followed,
 * no file with another hard link touched.
 */
export async function handOverTopLevel(workspaceDir: string, user: SandboxUser): Promise<void> {
  for (const name of await readdir(workspaceDir).catch(() => [] as string[])) {
    const path = join(workspaceDir, name);
    const info = await lstat(path).catch(() => undefined);
    if (info === undefined || info.isSymbolicLink() || (info.uid === user.uid && info.gid === user.gid)) continue;
    if (info.isDirectory() || (info.isFile() && info.nlink === 1)) await lchown(path, user.uid, user.gid).catch(() => {});
  }
}

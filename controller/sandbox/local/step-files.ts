import { constants } from 'node:fs';
import { lstat, mkdir, open, realpath, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { INTERNAL_DIR } from '../../workspace/workspace.js';
import { RESULT_MAX_BYTES } from '../bound-result.js';
import { parseRunnerResult } from '../runner-protocol.js';
import type { StepLimitKind, StepResult } from '../sandbox.js';

/**
 * The controller's side of the step files in a local workspace (`.oi/steps/<id>/`). The workspace is
 * writable by the sandboxed code, so nothing in it is trusted: `.oi` could have been replaced by a
 * symlink to another thread's folder, result.json by a symlink to a host file. Folders are checked to
 * be real folders and files are opened without following symlinks.
 */

export interface RunnerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the controller killed the runner. */
  stoppedBy?: 'timeout' | 'abort';
  stderrTail: string;
}

async function ensureRealDirectory(path: string): Promise<void> {
  try {
    const info = await lstat(path);
    if (info.isDirectory()) return;
    await rm(path, { force: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await mkdir(path);
}

/** Creates `.oi/steps/<id>/` and writes request.json (`requestJson`) there; returns the step folder. */
export async function prepareStepDirectory(workspaceDir: string, stepId: string, requestJson: string): Promise<string> {
  await mkdir(workspaceDir, { recursive: true });
  const internal = join(workspaceDir, INTERNAL_DIR);
  await ensureRealDirectory(internal);
  await ensureRealDirectory(join(internal, 'steps'));
  const stepDir = join(internal, 'steps', stepId);
  await mkdir(stepDir);
  await writeFile(join(stepDir, 'request.json'), requestJson, { flag: 'wx' });
  return stepDir;
}

async function isOwnStepDirectory(workspaceDir: string, stepDir: string, stepId: string): Promise<boolean> {
  try {
    return (await realpath(stepDir)) === join(await realpath(workspaceDir), INTERNAL_DIR, 'steps', stepId);
  } catch {
    return false;
  }
}

/** Reads a regular file without following a symlink; undefined when absent or not a regular file. */
async function readRegularFile(path: string, maxBytes: number): Promise<{ head: Buffer; tail: Buffer; size: number } | undefined> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) return undefined;
    const headLength = Math.min(info.size, info.size <= maxBytes ? maxBytes : Math.floor(maxBytes / 2));
    const head = Buffer.alloc(headLength);
    await handle.read(head, 0, headLength, 0);
    const tailLength = info.size <= maxBytes ? 0 : maxBytes - headLength;
    const tail = Buffer.alloc(tailLength);
    if (tailLength > 0) await handle.read(tail, 0, tailLength, info.size - tailLength);
    return { head, tail, size: info.size };
  } finally {
    await handle.close();
  }
}

/**
 * The runner's result.json, checked against the protocol; undefined when it is missing or not a valid
 * result; `too_large` when it is over RESULT_MAX_BYTES (issue 14: refused, never parsed — the user's code
 * runs in the runner's process and can write anything there).
 */
export async function readStepResult(workspaceDir: string, stepDir: string): Promise<StepResult | 'too_large' | undefined> {
  const stepId = stepDir.split('/').pop()!;
  if (!(await isOwnStepDirectory(workspaceDir, stepDir, stepId))) return undefined;
  const file = await readRegularFile(join(stepDir, 'result.json'), RESULT_MAX_BYTES);
  if (file !== undefined && file.tail.length > 0) return 'too_large';
  if (file === undefined) return undefined;
  const parsed = parseRunnerResult(file.head.toString('utf8'), stepId);
  return 'result' in parsed ? parsed.result : undefined;
}

const SIGNAL_NUMBERS: Record<number, NodeJS.Signals> = { 9: 'SIGKILL', 24: 'SIGXCPU', 25: 'SIGXFSZ' };

/**
 * Which limit ended a runner that wrote no result: killed by a signal (bubblewrap reports a signal
 * of its child as exit status 128 + signal), plus the marker file the runner writes on SIGXCPU.
 */
export async function interpretExit(stepDir: string, exit: RunnerExit): Promise<StepLimitKind | undefined> {
  const signal = exit.signal ?? (exit.code !== null && exit.code > 128 ? SIGNAL_NUMBERS[exit.code - 128] : undefined);
  if (signal === undefined || signal === null) return undefined;
  const marker = await readRegularFile(join(stepDir, 'limit'), 64);
  const markerText = marker?.head.toString('utf8').trim();
  if (signal === 'SIGXCPU' || markerText === 'cpu') return 'cpu';
  if (markerText === 'timeout') return 'timeout';
  if (signal === 'SIGXFSZ') return 'file_size';
  if (signal === 'SIGKILL') return 'memory'; // not sent by us: the kernel's OOM killer
  return undefined;
}

function decodeBounded(file: { head: Buffer; tail: Buffer; size: number } | undefined): { text: string; truncated: boolean } {
  if (file === undefined) return { text: '', truncated: false };
  if (file.tail.length === 0) return { text: file.head.toString('utf8'), truncated: false };
  const cut = file.size - file.head.length - file.tail.length;
  return {
    text: `${file.head.toString('utf8')}\n[... ${cut} bytes of output cut ...]\n${file.tail.toString('utf8')}`,
    truncated: true,
  };
}

/** What a runner that was killed had printed so far (its capture files), bounded like the runner does. */
export async function readPartialOutput(
  workspaceDir: string,
  stepDir: string,
  maxBytes: number,
): Promise<{ stdout: string; stderr: string; truncated: boolean }> {
  if (!(await isOwnStepDirectory(workspaceDir, stepDir, stepDir.split('/').pop()!))) {
    return { stdout: '', stderr: '', truncated: false };
  }
  const [stdout, stderr] = await Promise.all(
    ['stdout.log', 'stderr.log'].map(async (name) => {
      const path = join(stepDir, name);
      const decoded = decodeBounded(await readRegularFile(path, maxBytes));
      await unlink(path).catch(() => undefined);
      return decoded;
    }),
  );
  return { stdout: stdout!.text, stderr: stderr!.text, truncated: stdout!.truncated || stderr!.truncated };
}

/**
 * Removes a finished step's folder (request, result, partial output) so `.oi/steps` does not grow
 * with every step. Only removes it when it still is this workspace's own step folder.
 */
export async function removeStepDirectory(workspaceDir: string, stepDir: string): Promise<void> {
  const stepId = stepDir.split('/').pop()!;
  if (await isOwnStepDirectory(workspaceDir, stepDir, stepId)) await rm(stepDir, { recursive: true, force: true });
}

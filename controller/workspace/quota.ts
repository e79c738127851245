import type { Workspace } from './workspace.js';

/**
 * The per-thread workspace quota's words and its measure from the store (SANDBOX_WORKSPACE_MAX_MB,
 * issue 14), for both stores: object sizes on GCS, file sizes locally (the local sandbox measures
 * allocated blocks while a step runs). Sizes are told in MB, the setting's unit.
 */

const MB = 1024 * 1024;
const megabytes = (bytes: number) => `${Math.round(bytes / MB)} MB`;

/** Bytes the thread's workspace holds, internal files (checkpoint, step files) included. */
export async function workspaceBytes(workspace: Workspace): Promise<number> {
  const entries = await workspace.list({ includeInternal: true });
  return entries.reduce((sum, entry) => sum + entry.size, 0);
}

/** One sentence for the model and the thread when a step filled the workspace. */
export function quotaExceededMessage(usedBytes: number, quotaBytes: number): string {
  return (
    `The step was stopped because the thread's workspace reached its size limit (${megabytes(usedBytes)} used of ` +
    `${megabytes(quotaBytes)}, SANDBOX_WORKSPACE_MAX_MB): delete files you no longer need (os.remove, shutil.rmtree) ` +
    'or write smaller outputs, then try again.'
  );
}

/** The sentence for an upload that would not fit, or undefined when it fits. */
export function uploadRefusal(name: string, uploadBytes: number | undefined, usedBytes: number, quotaBytes: number): string | undefined {
  if (uploadBytes !== undefined && usedBytes + uploadBytes <= quotaBytes) return undefined;
  const size = uploadBytes === undefined ? '' : ` (${megabytes(uploadBytes)})`;
  return (
    `${name}${size} was not saved: the thread's workspace holds ${megabytes(usedBytes)} of its ${megabytes(quotaBytes)} ` +
    'limit (SANDBOX_WORKSPACE_MAX_MB); ask me to delete files you no longer need, then upload it again.'
  );
}

import type { HistoryMessage } from '../agent/history.js';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import type { SandboxSession } from '../sandbox/sandbox.js';
import { describeUploadsForModel, ingestSlackFiles } from '../slack/file-download.js';
import { postLongText } from '../slack/long-text.js';
import type { Mention } from '../slack/mention.js';
import type { SlackThread } from '../slack/slack-thread.js';
import type { Workspace } from '../workspace/workspace.js';
import { previewUploads } from './upload-preview.js';

/**
 * The user's message for the model: their text, where their files were saved in the workspace (files that
 * could not be saved are told in the thread, one sentence each), and a first look at uploaded tables.
 */
export async function buildUserMessage(options: {
  mention: Mention;
  thread: SlackThread;
  workspace: Workspace;
  session: SandboxSession;
  config: Config;
  signal: AbortSignal;
  log: Logger;
}): Promise<HistoryMessage> {
  const { mention, thread, config, log } = options;
  const ingest = await ingestSlackFiles({
    thread,
    botToken: config.slack.botToken,
    workspace: options.workspace,
    messageTs: mention.ts,
    files: mention.files,
    eventMayHaveFiles: mention.text === '',
    maxUploadBytes: config.limits.maxUploadMb * 1024 * 1024,
    workspaceMaxBytes: config.limits.workspaceMaxMb * 1024 * 1024,
    logger: log,
  });
  if (ingest.problems.length > 0) {
    await postLongText(thread, ingest.problems.map((problem) => `:warning: ${problem}`).join('\n'));
  }
  const parts: string[] = [];
  if (mention.text !== '') parts.push(mention.text);
  const uploads = describeUploadsForModel(ingest.saved);
  if (uploads !== '') {
    parts.push(uploads);
    const preview = await previewUploads({
      session: options.session,
      paths: ingest.saved.map((file) => file.path),
      timeoutSec: Math.min(60, config.limits.stepTimeoutSec),
      logger: log,
      signal: options.signal,
    });
    if (preview !== '') parts.push(preview);
  }
  if (mention.text === '') {
    parts.push(ingest.saved.length > 0 ? 'Please take a first look at the file(s) and tell me what they contain.' : '(The message had no text.)');
  }
  return { role: 'user', content: parts.join('\n\n'), meta: { ts: mention.ts, user: mention.user } };
}

import type { HistoryMessage } from '../agent/history.js';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import type { SandboxSession } from '../sandbox/sandbox.js';
import { describeUploadsForModel, ingestSlackFiles, type SavedUpload } from '../slack/file-download.js';
import { postLongText } from '../slack/long-text.js';
import type { Mention, SlackFileRef } from '../slack/mention.js';
import type { SlackThread } from '../slack/slack-thread.js';
import type { Workspace } from '../workspace/workspace.js';
import { catchUp, rememberSeen, type CatchUp } from './thread-catch-up.js';
import { previewUploads } from './upload-preview.js';

/**
 * The user's message for the model: what others wrote in the thread since the bot's last turn (thread-catch-up.ts),
 * their text, where their files and the files shared in the thread meanwhile were saved in the workspace (files
 * that could not be saved are told in the thread, one sentence each), and a first look at uploaded tables.
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
  const { mention, thread, config, log, workspace } = options;
  const caughtUp = await catchUp({ thread, workspace, mention, log });
  const ingest = (files: SlackFileRef[], eventMayHaveFiles = false) =>
    ingestSlackFiles({ thread, botToken: config.slack.botToken, workspace, messageTs: mention.ts, files, eventMayHaveFiles, maxUploadBytes: config.limits.maxUploadMb * 1024 * 1024, workspaceMaxBytes: config.limits.workspaceMaxMb * 1024 * 1024, logger: log });
  // The event may lack files its message has (Slack can deliver the mention first): the message read back has them.
  // When it could not be read, an empty mention is read again on its own, as before the catch-up.
  const own = await ingest(filesOfMention(mention.files, caughtUp.mentionFiles), caughtUp.mentionFiles === undefined && mention.text === '');
  const shared = await ingestShared(caughtUp, ingest);
  const problems = [...own.problems, ...shared.problems];
  if (problems.length > 0) await postLongText(thread, problems.map((problem) => `:warning: ${problem}`).join('\n'));
  await rememberSeen(workspace, mention.ts, log);

  const parts: string[] = [];
  if (caughtUp.context !== '') parts.push(caughtUp.context);
  if (mention.text !== '') parts.push(mention.text);
  const saved = [...own.saved, ...shared.saved];
  const uploads = [describeUploadsForModel(own.saved), ...shared.descriptions].filter((text) => text !== '').join('\n');
  if (uploads !== '') {
    parts.push(uploads);
    const preview = await previewUploads({
      session: options.session,
      paths: saved.map((file) => file.path),
      timeoutSec: Math.min(60, config.limits.stepTimeoutSec),
      logger: log,
      signal: options.signal,
    });
    if (preview !== '') parts.push(preview);
  }
  if (mention.text === '') {
    parts.push(own.saved.length > 0 ? 'Please take a first look at the file(s) and tell me what they contain.' : '(The message had no text.)');
  }
  return { role: 'user', content: parts.join('\n\n'), meta: { ts: mention.ts, user: mention.user } };
}

/** The event's files, with what Slack has on the message itself (full details, or files the event left out). */
function filesOfMention(eventFiles: SlackFileRef[], messageFiles: SlackFileRef[] | undefined): SlackFileRef[] {
  if (messageFiles === undefined || messageFiles.length === 0) return eventFiles;
  const fromMessage = new Set(messageFiles.map((file) => file.id));
  return [...messageFiles, ...eventFiles.filter((file) => !fromMessage.has(file.id))];
}

type Ingest = (files: SlackFileRef[]) => Promise<{ saved: SavedUpload[]; problems: string[] }>;

/** Files others shared since the last turn, fetched like attachments; each person's told as theirs. */
async function ingestShared(caughtUp: CatchUp, ingest: Ingest): Promise<{ saved: SavedUpload[]; problems: string[]; descriptions: string[] }> {
  const saved: SavedUpload[] = [];
  const problems: string[] = [];
  const descriptions: string[] = [];
  const users = [...new Set(caughtUp.shared.map((entry) => entry.user))];
  for (const user of users) {
    const result = await ingest(caughtUp.shared.filter((entry) => entry.user === user).map((entry) => entry.file));
    saved.push(...result.saved);
    problems.push(...result.problems);
    descriptions.push(describeUploadsForModel(result.saved, `<@${user}>`));
  }
  if (caughtUp.sharedLeftOut > 0) descriptions.push(`(${caughtUp.sharedLeftOut} more files shared in the thread were not fetched: attach them to a mention to use them.)`);
  return { saved, problems, descriptions };
}

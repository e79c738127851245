/**
 * Helpers for the end-to-end tests of issue 7 (the Slack experience and the admin's controls): reading a
 * turn's status message back from the fake Slack, clicking its Stop button, and looking for the sandbox's
 * processes on this machine.
 */
import { readdir, readFile } from 'node:fs/promises';
import type { FakeSlack, SlackMessage } from '../fakes/fake-slack.js';
import type { Harness } from './harness.js';
import { SIGNING_SECRET } from './bot-process.js';
import { postBlockAction } from './slack-events.js';
import { STOP_ACTION, statusMessages, stopButtonValue } from './status-blocks.js';

export { blocksText, STOP_ACTION, statusMessages, stopButtonValue } from './status-blocks.js';

/** Waits until the thread's last status message is finished (no Stop button: the final edit was made) and returns it. */
export function waitForFinishedStatus(slack: FakeSlack, threadTs: string, channel = 'C1', timeoutMs = 10_000): Promise<SlackMessage> {
  return slack.waitFor(() => {
    const status = statusMessages(slack, channel, threadTs).at(-1);
    return status !== undefined && stopButtonValue(status.blocks) === undefined ? status : undefined;
  }, timeoutMs);
}

/** The answer messages of a thread: the bot's messages without blocks (not the status message) and without files. */
export function answerMessages(slack: FakeSlack, channel: string, threadTs: string): SlackMessage[] {
  return slack.botMessagesIn(channel, threadTs).filter((message) => !Array.isArray(message.blocks) && message.files === undefined);
}

/** A Stop button as a user saw it: on which message, with which value. */
export interface StopButton {
  messageTs: string;
  value: string;
}

/** Waits until the thread's status message shows a Stop button, and returns it. */
export function waitForStopButton(h: Harness, threadTs: string, channel = 'C1'): Promise<StopButton> {
  return h.slack.waitFor(() => {
    for (const message of statusMessages(h.slack, channel, threadTs)) {
      const value = stopButtonValue(message.blocks);
      if (value !== undefined) return { messageTs: message.ts, value };
    }
    return undefined;
  }, 20_000);
}

/** Clicks a Stop button as `user` (a signed block_actions payload, as Slack sends it). */
export async function clickStop(h: Harness, options: { user: string; channel?: string; threadTs: string; button: StopButton }): Promise<number> {
  const result = await postBlockAction(h.bot.eventsUrl, SIGNING_SECRET, {
    actionId: STOP_ACTION,
    value: options.button.value,
    user: options.user,
    channel: options.channel ?? 'C1',
    messageTs: options.button.messageTs,
    threadTs: options.threadTs,
  });
  return result.status;
}

interface ProcessInfo {
  pid: number;
  parent: number;
  commandLine: string;
}

/** Every process of this machine (as seen from here: processes in bubblewrap's pid namespace included). */
export async function listProcesses(): Promise<ProcessInfo[]> {
  const entries = (await readdir('/proc')).filter((name) => /^\d+$/.test(name));
  const processes: ProcessInfo[] = [];
  for (const entry of entries) {
    try {
      const [commandLine, stat] = await Promise.all([readFile(`/proc/${entry}/cmdline`, 'utf8'), readFile(`/proc/${entry}/stat`, 'utf8')]);
      // stat: "pid (command) state ppid ...": the command may hold spaces and parentheses, so split after the last ')'.
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      processes.push({ pid: Number(entry), parent, commandLine: commandLine.split('\0').join(' ').trim() });
    } catch {
      // the process ended while we looked
    }
  }
  return processes;
}

/** Processes whose command line contains `marker`. */
export async function processesMatching(marker: string): Promise<ProcessInfo[]> {
  return (await listProcesses()).filter((info) => info.commandLine.includes(marker));
}

/** Every descendant of `root` (children, their children, ...). */
export async function descendantsOf(root: number): Promise<ProcessInfo[]> {
  const processes = await listProcesses();
  const found: ProcessInfo[] = [];
  let parents = new Set([root]);
  while (parents.size > 0) {
    const children = processes.filter((info) => parents.has(info.parent));
    found.push(...children);
    parents = new Set(children.map((info) => info.pid));
  }
  return found;
}

/** Polls `check` until it returns true (every 50 ms), or throws after `timeoutMs` with `describe()`. */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs: number, describe: () => Promise<string> | string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`condition not reached within ${timeoutMs} ms: ${await describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Ten thousand characters is ~40 paragraphs like these: distinct, plain words, each ending in a marker. */
export function paragraphs(count: number, wordsEach: number): string[] {
  return Array.from({ length: count }, (_, index) => {
    const words = Array.from({ length: wordsEach }, (_, word) => `word${(index * 7 + word) % 97}`).join(' ');
    return `Paragraph ${index} begins: ${words}. End of paragraph ${index}.`;
  });
}

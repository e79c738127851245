import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const SIGNING_SECRET = 'test-signing-secret';
export const BOT_TOKEN = 'xoxb-test-token';
export const OPENAI_KEY = 'sk-test-openai-key';

export interface BotProcess {
  url: string;
  eventsUrl: string;
  port: number;
  dataDir: string;
  /** Everything the bot wrote to stdout and stderr (JSON log lines). */
  output: () => string;
  /** The bot's JSON log lines so far, parsed (other output is skipped). */
  logLines: () => LogLine[];
  stop: () => Promise<number | null>;
  child: ChildProcess;
}

/** One line of the bot's log (controller/logger.ts): `severity`, `message` and the fields the caller gave. */
export interface LogLine {
  severity: string;
  message: string;
  [field: string]: unknown;
}

/** The JSON log lines in a process's output; anything that is not a JSON object with a message is skipped. */
export function parseLogLines(output: string): LogLine[] {
  const lines: LogLine[] = [];
  for (const text of output.split('\n')) {
    if (!text.startsWith('{')) continue;
    try {
      const line = JSON.parse(text) as Partial<LogLine>;
      if (typeof line.message === 'string' && typeof line.severity === 'string') lines.push(line as LogLine);
    } catch {
      // a partial line still being written, or another program's output
    }
  }
  return lines;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts the bot the way operators do (`npm start`'s command, environment variables only), against
 * the fakes given by URL. Resolves once /healthz answers.
 */
export async function startBot(options: {
  slackApiUrl: string;
  openaiBaseUrl: string;
  env?: Record<string, string>;
  dataDir?: string;
  /** The program to start (benchmarks start a bare Bolt app the same way). */
  entry?: string;
}): Promise<BotProcess> {
  const port = await freePort();
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'oi-bot-')));
  let output = '';
  const child = spawn(process.execPath, ['--import', 'tsx', options.entry ?? 'controller/main.ts'], {
    cwd: PROJECT_ROOT,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/tmp',
      SLACK_BOT_TOKEN: BOT_TOKEN,
      SLACK_SIGNING_SECRET: SIGNING_SECRET,
      SLACK_API_URL: options.slackApiUrl,
      OPENAI_API_KEY: OPENAI_KEY,
      OPENAI_BASE_URL: options.openaiBaseUrl,
      OPENAI_MODEL: 'test-model',
      PORT: String(port),
      DATA_DIR: dataDir,
      STATUS_INTERVAL_MS: '50',
      LOG_LEVEL: 'DEBUG',
      // The status-message way, which most end-to-end tests read; streamed turns are tested with SLACK_STREAMING=auto.
      SLACK_STREAMING: 'off',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`bot exited during start-up (${child.exitCode}):\n${output}`);
    try {
      const response = await fetch(`${url}/healthz`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`bot did not become healthy:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    eventsUrl: `${url}/slack/events`,
    port,
    dataDir,
    output: () => output,
    logLines: () => parseLogLines(output),
    child,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Runs the bot's start command to its exit (for start-up errors); a bot still running after 20 s is killed. */
export async function runBotToExit(env: Record<string, string>): Promise<{ code: number | null; output: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'controller/main.ts'], {
      cwd: PROJECT_ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      stderr += chunk.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output, stderr });
    });
  });
}

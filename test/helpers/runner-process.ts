import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { ResourceLimits, TableDisplay } from '../../controller/sandbox/sandbox.js';
import type { RunnerResultFile } from '../../controller/sandbox/runner-protocol.js';

/**
 * Drives the real sandbox-image/runner.py on real Python through its pipes (session mode) or its
 * request/result files (one-shot mode), as docs/runner-protocol.md describes them.
 */

export const RUNNER = fileURLToPath(new URL('../../sandbox-image/runner.py', import.meta.url));
export const PYTHON = '/usr/bin/python3';
export const LIMITS: ResourceLimits = { memoryMb: 2048, cpuSec: 60, maxProcesses: 256, maxFileMb: 100 };
export const ENVIRONMENT = { PATH: '/usr/bin:/bin', HOME: '/tmp', LANG: 'C.UTF-8', PYTHONDONTWRITEBYTECODE: '1' };
/** How long one reply may take before a test fails (a hang fails in seconds, not at the suite timeout). */
const REPLY_TIMEOUT_MS = 60_000;

export const hasModule = (module: string, python = PYTHON): boolean =>
  spawnSync(python, ['-c', `import ${module}`], { stdio: 'ignore' }).status === 0;

/** The pyenv python3 on PATH (no pandas, no dill): the runner must work with it too. */
export const barePython = (): string | undefined => {
  const found = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).stdout?.trim();
  return found === undefined || found === '' || hasModule('dill', found) ? undefined : found;
};

export interface SessionResult extends RunnerResultFile {
  type: 'result';
  restored: 'memory' | 'checkpoint' | 'fresh';
  displays: TableDisplay[];
}

export interface ReadyReply {
  type: 'ready';
  restored: 'checkpoint' | 'fresh';
  notes: string[];
}

export interface StepOptions {
  timeoutSec?: number;
  /** How long to wait for the result (default REPLY_TIMEOUT_MS). */
  replyTimeoutMs?: number;
  limits?: ResourceLimits;
  maxOutputBytes?: number;
}

const workspaces: string[] = [];

export function newWorkspace(): string {
  const root = mkdtempSync(join(tmpdir(), 'runner-v2-test-'));
  workspaces.push(root);
  return root;
}

export function removeWorkspaces(): void {
  for (const root of workspaces.splice(0)) rmSync(root, { recursive: true, force: true });
}

export class RunnerSession {
  readonly lines: string[] = [];
  /** Bytes of every line received, in order (to check the size of a reply as sent). */
  readonly lineBytes: number[] = [];
  private waiters: Array<() => void> = [];
  private exitStatus: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private stderrText = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(readonly child: ChildProcessByStdio<Writable, Readable, Readable>, readonly workspace: string) {
    createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', (line) => {
      this.lines.push(line);
      this.lineBytes.push(Buffer.byteLength(line));
      this.wake();
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (this.stderrText = (this.stderrText + chunk).slice(-8_000)));
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exitStatus = { code, signal };
        this.wake();
        resolve(this.exitStatus);
      }),
    );
  }

  /** Starts `runner.py --session` (optionally under a prefix such as bwrap) and waits for its ready line. */
  static async start(
    workspace: string,
    options: { python?: string; args?: string[]; prefix?: string[] } = {},
  ): Promise<{ session: RunnerSession; ready: ReadyReply }> {
    const command = [...(options.prefix ?? []), options.python ?? PYTHON, RUNNER, '--workspace', workspace, '--session', ...(options.args ?? [])];
    const child = spawn(command[0]!, command.slice(1), { env: ENVIRONMENT, stdio: ['pipe', 'pipe', 'pipe'] });
    const session = new RunnerSession(child, workspace);
    const ready = (await session.next()) as unknown as ReadyReply;
    if (ready.type !== 'ready') throw new Error(`expected ready, got ${JSON.stringify(ready)}`);
    return { session, ready };
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  /** The next reply line, parsed. Rejects when the runner exits first or nothing comes in time. */
  async next(timeoutMs = REPLY_TIMEOUT_MS): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (this.exitStatus !== undefined) {
        throw new Error(`runner exited (${JSON.stringify(this.exitStatus)}) before replying: ${this.stderrText}`);
      }
      if (Date.now() > deadline) throw new Error('no reply from the runner in time');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1_000);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return JSON.parse(this.lines.shift()!) as Record<string, unknown>;
  }

  send(message: object): void {
    this.child.stdin.write(`${JSON.stringify(message)}\n`);
  }

  /** Sends a step and returns its id without waiting for the result. */
  start(code: string, options: StepOptions = {}): string {
    const id = randomUUID();
    this.send({
      type: 'step',
      id,
      code,
      timeoutSec: options.timeoutSec ?? 60,
      limits: options.limits ?? LIMITS,
      maxOutputBytes: options.maxOutputBytes ?? 100_000,
    });
    return id;
  }

  async result(id: string, timeoutMs = REPLY_TIMEOUT_MS): Promise<SessionResult> {
    const reply = (await this.next(timeoutMs)) as unknown as SessionResult;
    if (reply.type !== 'result' || reply.id !== id) throw new Error(`expected the result of ${id}, got ${JSON.stringify(reply).slice(0, 2_000)}`);
    return reply;
  }

  async run(code: string, options: StepOptions = {}): Promise<SessionResult> {
    return this.result(this.start(code, options), options.replyTimeoutMs);
  }

  /** Resolves once the running step has printed `text` (its stdout capture file holds it). */
  async waitForOutput(id: string, text: string): Promise<void> {
    const path = join(this.workspace, '.oi', 'steps', id, 'stdout.log');
    const deadline = Date.now() + REPLY_TIMEOUT_MS;
    for (;;) {
      let content = '';
      try {
        content = readFileSync(path, 'utf8');
      } catch {
        // not created yet
      }
      if (content.includes(text)) return;
      if (this.exitStatus !== undefined || Date.now() > deadline) throw new Error(`step ${id} never printed ${text}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async exit(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.child.stdin.end(`${JSON.stringify({ type: 'exit' })}\n`);
    return this.exited;
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

/** Runs one step in one-shot mode (`--step`), as both sandboxes do with SANDBOX_SESSION=off. */
export function runOneShot(
  workspace: string,
  code: string,
  options: StepOptions & { displays?: boolean; python?: string } = {},
): { result: SessionResult; resultBytes: number } {
  const id = randomUUID();
  const stepDir = join(workspace, '.oi', 'steps', id);
  mkdirSync(stepDir, { recursive: true });
  const request = {
    id,
    language: 'python',
    code,
    timeoutSec: options.timeoutSec ?? 60,
    limits: options.limits ?? LIMITS,
    maxOutputBytes: options.maxOutputBytes ?? 100_000,
    ...(options.displays === undefined ? {} : { displays: options.displays }),
  };
  writeFileSync(join(stepDir, 'request.json'), JSON.stringify(request));
  const child = spawnSync(options.python ?? PYTHON, [RUNNER, '--workspace', workspace, '--step', id], {
    encoding: 'utf8',
    env: ENVIRONMENT,
    timeout: REPLY_TIMEOUT_MS,
  });
  if (child.status !== 0) throw new Error(`runner failed (${child.status}): ${child.stderr}`);
  const text = readFileSync(join(stepDir, 'result.json'));
  return { result: JSON.parse(text.toString('utf8')) as SessionResult, resultBytes: text.length };
}

/** Host processes whose command line is exactly `sleep <marker>` (zombies have none: they are gone). */
export function sleepersWith(marker: string): string[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((name) => {
      try {
        return readFileSync(`/proc/${name}/cmdline`, 'utf8') === `sleep\0${marker}\0`;
      } catch {
        return false;
      }
    });
}

/** True when the process is gone or a zombie (dead, waiting to be reaped). */
export function isGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** A unique number for `sleep <marker>`, so parallel test files never see each other's sleepers. */
export function sleepMarker(): string {
  return `${9000 + Math.floor(Math.random() * 1000)}.${process.pid}${Math.floor(Math.random() * 1e6)}`;
}

import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { attachNetwork, stopStack, type AttachedStack, type NetworkTools, type Wrap } from './jail-network.js';
import { killQuietly, type SessionCgroup } from './session-cgroup.js';

/**
 * The first process of a jail, started ahead of time (issue 14's +15 ms per cold step): a bash that has
 * already joined the slot's cgroup and, with egress, made the network namespace the stack is attached
 * to; it has the seccomp program waiting on its fd 5. When a jail is needed it is handed the command
 * line (see below) and execs it — bwrap then starts with nothing left to do on the step's path but
 * itself. Before that exec no code of the thread exists, so nothing of this runs with hostile input.
 *
 * Written as a few lines of bash rather than a helper program: bash is on every host the jail runs
 * on. The command line is not sent down stdin: bash reads a pipe one byte at a time (so as to leave
 * the rest to the program it execs: a session's requests), and ~2 KB of bwrap arguments read so cost a
 * cold step ~9 ms. It is written to a file of the slot's in the private run folder instead, which
 * bash's mapfile reads in one go; stdin carries only the signal to go, one newline.
 */

const LAUNCHER_SCRIPT = [
  'echo ready',
  'IFS= read -r _ || exit 125',
  "mapfile -d '' -t argv < \"$1\" || exit 125",
  '[ "${#argv[@]}" -gt 0 ] || exit 125',
  'exec "${argv[@]}"',
].join('\n');

export interface JailLauncherOptions {
  cgroup?: SessionCgroup;
  /** With egress: the stack to attach to a new network namespace. */
  network?: { tools: NetworkTools; rootless: boolean; unshare: string };
  /** The seccomp program bwrap reads from fd 5 (--seccomp 5). */
  seccompProgram?: Buffer;
  /** The environment of the jail's first process (bwrap clears it; a plain runner keeps it). */
  environment: Record<string, string>;
  runDir: string;
  name: string;
}

/** Resolves once the child printed its first line (read as bytes, then paused: later output belongs to the jail). */
function ready(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let received = Buffer.alloc(0);
    const onExit = (code: number | null) => reject(new Error(`the jail launcher exited (${code}) before it was ready`));
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (!received.includes(10)) return;
      child.stdout!.off('data', onData);
      child.stdout!.pause();
      child.off('exit', onExit);
      resolve();
    };
    child.once('error', reject);
    child.once('exit', onExit);
    child.stdout!.on('data', onData);
  });
}

export class JailLauncher {
  private used = false;

  private constructor(
    readonly process: ChildProcess,
    private readonly stack: AttachedStack | undefined,
    private readonly commandFile: string,
  ) {}

  static async start(options: JailLauncherOptions): Promise<JailLauncher> {
    const wrap: Wrap = (command, args) => options.cgroup?.enterCommand(command, args) ?? { command, args };
    const network = options.network;
    const namespaces = network === undefined ? [] : [network.unshare, ...(network.rootless ? ['--user', '--map-root-user', '--net'] : ['--net']), '--'];
    const commandFile = join(options.runDir, `${options.name}.argv`);
    const [first, ...rest] = [...namespaces, '/bin/bash', '-c', LAUNCHER_SCRIPT, 'oi-jail-launcher', commandFile];
    const command = wrap(first!, rest);
    const child = spawn(command.command, command.args, {
      env: options.environment,
      detached: true, // its own process group: the jail's whole tree can be signalled at once
      stdio: ['pipe', 'pipe', 'pipe', 'ignore', 'ignore', options.seccompProgram === undefined ? 'ignore' : 'pipe'],
    });
    child.stdin!.on('error', () => {}); // a launcher that died: its exit is what gets reported
    const filterPipe = (child.stdio as unknown as (Writable | null)[])[5];
    if (options.seccompProgram !== undefined && filterPipe) {
      filterPipe.on('error', () => {});
      filterPipe.end(options.seccompProgram); // far below a pipe's buffer: bwrap reads it when it starts
    }
    let stack: AttachedStack | undefined;
    try {
      await ready(child);
      if (network !== undefined) {
        stack = await attachNetwork(network.tools, { pid: child.pid!, rootless: network.rootless, runDir: options.runDir, name: options.name, wrap });
      }
      return new JailLauncher(child, stack, commandFile);
    } catch (error) {
      killQuietly(child.pid ?? -1);
      throw error;
    }
  }

  /** Processes of the slot that are not the jail's own: the stack. */
  get stackPid(): number | undefined {
    return this.stack?.pid;
  }

  /** Replaces the launcher with `command args…` (once); returns its process, with stdin, stdout and stderr piped. */
  exec(command: string, args: string[]): ChildProcess {
    if (this.used) throw new Error('a jail launcher runs one command');
    this.used = true;
    const fields = [command, ...args];
    if (fields.some((field) => field.includes('\0'))) throw new Error('a jail command line cannot hold a NUL byte');
    writeFileSync(this.commandFile, fields.map((field) => `${field}\0`).join(''), { mode: 0o600 });
    this.process.stdin!.write('\n');
    return this.process;
  }

  /** Ends the launcher (or what it became) and the stack. */
  stop(): void {
    if (this.stack !== undefined) stopStack(this.stack);
    rmSync(this.commandFile, { force: true });
    this.process.stdin?.destroy();
    if (this.process.pid !== undefined) {
      try {
        process.kill(-this.process.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  }
}

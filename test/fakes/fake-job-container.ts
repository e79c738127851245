import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { entrypointTimingsJson } from './cloud-run-job.js';
import type { FakeGcs, ObjectRequest } from './fake-gcs.js';
import { LiveMount } from './fake-gcsfuse.js';

/**
 * What one Cloud Run Job execution of the sandbox image does, for the Cloud Run fake (sandbox-image/entrypoint.sh
 * without gcsfuse and Docker): the thread's prefix is mounted (LiveMount over FakeGcs), then
 * - one step (OI_STEP_ID): `runner.py --step` runs once and the mount is flushed (the unmount);
 * - a session (OI_SESSION_ID): the real token_broker.py serves OI_TOKEN on a unix socket, and the real
 *   session_relay.py polls the mailbox through FakeGcs's JSON API with that token and drives the real
 *   `runner.py --session`. The mount is refreshed when the relay takes a request and flushed before it stores
 *   a result, as the real mount with its caches off would show and hold the files (fake-gcsfuse.ts).
 * The runner never shares the controller's identity: it runs as `nobody` when the tests run as root (setpriv,
 * as the entrypoint does for the `sandbox` user), else in its own PID namespace (bubblewrap), so the bot's
 * /proc/<pid>/environ stays out of its reach, with a clean environment either way.
 */

export interface ContainerOptions {
  executionName: string;
  createdAt: Date;
  gcs: FakeGcs;
  /** The fake GCS JSON API endpoint the relay talks to (production: https://storage.googleapis.com). */
  gcsUrl: string;
  env: Record<string, string>;
  python: string;
  /** OI_SESSION_PRELOAD for a session's runner (FakeCloudRun's option). */
  sessionPreload?: string;
  onOutput: (text: string) => void;
  /** A mailbox request that breaks the rules (e.g. without the session's token). */
  onViolation: (message: string) => void;
}

export interface RunningContainer {
  /** Resolves with how the container ended (exit status 0 or not; undefined when it was killed). */
  ended: Promise<'succeeded' | 'failed' | undefined>;
  /** SIGKILL to everything in the container (cancel, task timeout, crash): nothing more reaches GCS. */
  kill: () => void;
}

const IMAGE_DIR = fileURLToPath(new URL('../../sandbox-image/', import.meta.url));
/** What the relay reads and writes with the JSON API, never through the mount (the rest of `.oi/session/` is files). */
const MAILBOX_OBJECTS = /^\.oi\/session\/[^/]+\/(requests\/|results\/|ready\.json$|closed\.json$)/;
const NOBODY = 65534;
const CLEAN_PATH = 'PATH=/usr/bin:/bin';

export function startContainer(options: ContainerOptions): RunningContainer {
  // Like the real token, the run's token reaches only its thread's prefix in FakeGcs. The emulator mints one
  // token for every thread, so a session's relay gets one of its own (the broker serves it), bound to its prefix.
  options.gcs.access.bindToPrefix(options.env.OI_TOKEN!, options.env.OI_PREFIX!);
  if (options.env.OI_SESSION_ID !== undefined) {
    const sessionToken = `${options.env.OI_TOKEN}.${options.executionName.split('/').at(-1)}`;
    options.gcs.access.bindToPrefix(sessionToken, options.env.OI_PREFIX!);
    options = { ...options, env: { ...options.env, OI_TOKEN: sessionToken } };
  }
  const processes: ChildProcess[] = [];
  let killed = false;
  const kill = () => {
    killed = true;
    for (const child of processes) if (child.pid !== undefined && child.exitCode === null) signalGroup(child.pid);
  };
  const ended = (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fake-cloud-run-'));
    try {
      const { OI_BUCKET: bucket, OI_PREFIX: prefix } = options.env as Record<'OI_BUCKET' | 'OI_PREFIX', string>;
      const owner = process.getuid?.() === 0 ? { uid: NOBODY, gid: NOBODY } : undefined;
      const session = options.env.OI_SESSION_ID;
      const mount = new LiveMount(options.gcs, bucket, prefix, dir, { owner, ...(session === undefined ? {} : { exclude: MAILBOX_OBJECTS }) });
      await mount.refresh();
      if (killed) return undefined;
      if (options.env.OI_TIMINGS === '1') {
        const folder = session === undefined ? `.oi/steps/${options.env.OI_STEP_ID}` : `.oi/session/${session}`;
        await mount.writeFile(`${folder}/entrypoint-timings.json`, entrypointTimingsJson(options.createdAt.getTime()));
      }
      const code = session === undefined ? await runStep(options, dir, processes) : await runSession(options, mount, processes, () => killed);
      if (killed) return undefined; // like gcsfuse after SIGKILL: nothing more is written
      await mount.flush();
      return code === 0 ? 'succeeded' : 'failed';
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  })();
  return { ended, kill };
}

function runStep(options: ContainerOptions, dir: string, processes: ChildProcess[]): Promise<number | null> {
  const child = spawnLogged(runnerCommand(options, dir, ['--step', options.env.OI_STEP_ID!]), {}, options);
  processes.push(child);
  return exitOf(child);
}

async function runSession(options: ContainerOptions, mount: LiveMount, processes: ChildProcess[], killed: () => boolean): Promise<number | null> {
  const { env, gcs } = options;
  const bucket = env.OI_BUCKET!;
  const mailbox = `${env.OI_PREFIX}.oi/session/${env.OI_SESSION_ID}/`;
  const intercept = async (request: ObjectRequest) => {
    if (request.bucket !== bucket || !request.name.startsWith(mailbox)) return;
    // The controller reads and writes the mailbox with its own credentials (none against the emulator); the
    // relay with the session's token, and never another.
    if (request.authorization !== undefined && request.authorization !== `Bearer ${env.OI_TOKEN}`) {
      options.onViolation(`a mailbox request with another token than the session's: ${request.method} ${request.name}`);
    }
    const rest = request.name.slice(mailbox.length);
    if (request.method === 'GET' && rest.startsWith('requests/') && gcs.bucket(bucket).has(request.name)) await mount.refresh();
    if (request.upload && rest.startsWith('results/')) await mount.flush();
  };
  const sockets = await mkdtemp(join(tmpdir(), 'fake-cloud-run-token-'));
  gcs.interceptors.add(intercept);
  try {
    const socket = join(sockets, 'token.sock');
    const brokerEnvironment = { PATH: '/usr/bin:/bin', OI_TOKEN: env.OI_TOKEN!, OI_TOKEN_EXPIRES_AT: env.OI_TOKEN_EXPIRES_AT! };
    processes.push(spawnLogged([options.python, join(IMAGE_DIR, 'token_broker.py'), socket], brokerEnvironment, options));
    for (let attempt = 0; attempt < 200 && !existsSync(socket) && !killed(); attempt++) await new Promise((resolve) => setTimeout(resolve, 10));
    if (killed()) return null;
    const relay = [
      options.python, join(IMAGE_DIR, 'session_relay.py'),
      '--bucket', bucket, '--prefix', env.OI_PREFIX!, '--session', env.OI_SESSION_ID!,
      '--idle-sec', env.OI_SESSION_IDLE_SEC!, '--end-at', env.OI_SESSION_END_AT!,
      '--token-url', `unix://${socket}`, '--storage-endpoint', options.gcsUrl,
      '--', ...runnerCommand(options, mount.dir, ['--session', '--limits', env.OI_LIMITS!]),
    ];
    const child = spawnLogged(relay, { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' }, options);
    processes.push(child);
    return await exitOf(child);
  } finally {
    gcs.interceptors.delete(intercept);
    for (const child of processes) if (child.pid !== undefined && child.exitCode === null) signalGroup(child.pid);
    await rm(sockets, { recursive: true, force: true });
  }
}

/**
 * matplotlib's font cache, built once and shared by every execution, as the image builds it at build time
 * (Dockerfile.sandbox, MPLCONFIGDIR); without it every session would spend seconds building it on import.
 */
function fontCacheDir(): string {
  const dir = join(tmpdir(), `fake-cloud-run-matplotlib-${process.getuid?.() ?? 0}`);
  mkdirSync(dir, { recursive: true });
  if (process.getuid?.() === 0) chownSync(dir, NOBODY, NOBODY);
  return dir;
}

/** runner.py with a clean environment, as `nobody` (root) or in its own PID namespace (bubblewrap). */
function runnerCommand(options: ContainerOptions, dir: string, mode: string[]): string[] {
  const environment = [CLEAN_PATH, `HOME=${dir}`, 'LANG=C.UTF-8', `MPLCONFIGDIR=${fontCacheDir()}`];
  if (options.sessionPreload !== undefined) environment.push(`OI_SESSION_PRELOAD=${options.sessionPreload}`);
  const runner = ['env', '-i', ...environment, options.python, join(IMAGE_DIR, 'runner.py'), '--workspace', dir, ...mode];
  if (process.getuid?.() === 0) return ['setpriv', '--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', ...runner];
  if (existsSync('/usr/bin/bwrap')) return ['/usr/bin/bwrap', '--dev-bind', '/', '/', '--unshare-pid', '--proc', '/proc', '--die-with-parent', ...runner];
  return runner;
}

function spawnLogged(command: string[], env: Record<string, string>, options: ContainerOptions): ChildProcess {
  // Its own process group, so that a kill reaches the relay, the runner and whatever the code started.
  const child = spawn(command[0]!, command.slice(1), { env: { PATH: '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  child.stdout!.on('data', (chunk: Buffer) => options.onOutput(chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => options.onOutput(chunk.toString()));
  return child;
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    child.once('error', () => resolve(null));
    child.once('close', (code) => resolve(code));
  });
}

function signalGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

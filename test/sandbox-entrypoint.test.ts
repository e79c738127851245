import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';

// The parts of the sandbox image that run without Cloud Run: the token broker gcsfuse reads its
// token from, the entrypoint's refusal of malformed execution overrides, the gcsfuse command line it
// runs, and the build-time record of the installed libraries.

const imageDir = fileURLToPath(new URL('../sandbox-image/', import.meta.url));
const python = '/usr/bin/python3';

function getJson(socketPath: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const call = request({ socketPath, path: '/', method: 'GET' }, (response) => {
      let text = '';
      response.on('data', (chunk: Buffer) => (text += chunk.toString()));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
    });
    call.on('error', reject);
    call.end();
  });
}

describe('sandbox image', () => {
  it('token_broker.py serves the token as an OAuth2 token on an owner-only unix socket', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'oi-broker-'));
    const socketPath = join(dir, 'token.sock');
    const expiresAt = Math.floor(Date.now() / 1000) + 600;
    const broker = spawn(python, [join(imageDir, 'token_broker.py'), socketPath], {
      env: { PATH: '/usr/bin:/bin', OI_TOKEN: 'ya29.downscoped', OI_TOKEN_EXPIRES_AT: String(expiresAt) },
      stdio: 'ignore',
    });
    try {
      for (let attempt = 0; attempt < 200 && !existsSync(socketPath); attempt++) await new Promise((resolve) => setTimeout(resolve, 25));
      expect(statSync(socketPath).mode & 0o777).toBe(0o600);
      const { status, body } = await getJson(socketPath);
      expect(status).toBe(200);
      expect(body.access_token).toBe('ya29.downscoped');
      expect(body.token_type).toBe('Bearer');
      expect(body.expires_in).toBeTypeOf('number');
      expect(body.expires_in).toBeGreaterThan(500);
      expect(body.expires_in).toBeLessThanOrEqual(600);
      expect(Date.parse(String(body.expiry))).toBe(expiresAt * 1000);
    } finally {
      broker.kill();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('token_broker.py refuses to start without a token', () => {
    const result = spawnSync(python, [join(imageDir, 'token_broker.py'), '/tmp/unused.sock'], { env: { PATH: '/usr/bin:/bin' }, encoding: 'utf8' });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/OI_TOKEN is not set/);
  });

  it('entrypoint.sh refuses malformed overrides before touching anything', () => {
    const valid = { OI_BUCKET: 'oi-bucket', OI_PREFIX: 'workspaces/T1/C1/1.2/', OI_STEP_ID: 'step-1', OI_TOKEN: 'token' };
    const cases: [Record<string, string>, RegExp][] = [
      [{ ...valid, OI_PREFIX: 'workspaces/T1/C1/1.2' }, /invalid OI_PREFIX/],
      [{ ...valid, OI_PREFIX: 'threads/T1/C1/1.2/' }, /invalid OI_PREFIX/],
      [{ ...valid, OI_PREFIX: 'workspaces/T1/../1.2/' }, /invalid OI_PREFIX/],
      [{ ...valid, OI_PREFIX: 'workspaces/T1/C1/1.2/x/' }, /invalid OI_PREFIX/],
      [{ ...valid, OI_BUCKET: 'Bad Bucket' }, /invalid OI_BUCKET/],
      [{ ...valid, OI_STEP_ID: '../x' }, /invalid OI_STEP_ID/],
      [{ ...valid, OI_TOKEN: '' }, /OI_TOKEN is required/],
      [{ ...valid, OI_TIMINGS: 'yes' }, /invalid OI_TIMINGS/],
    ];
    for (const [env, message] of cases) {
      const result = spawnSync('/bin/bash', [join(imageDir, 'entrypoint.sh')], { env: { PATH: '/usr/bin:/bin', ...env }, encoding: 'utf8' });
      expect(result.status, JSON.stringify(env)).not.toBe(0);
      expect(result.stderr, JSON.stringify(env)).toMatch(message);
    }
  });

  it('entrypoint.sh mounts only the thread prefix, as a flat bucket, with the broker token', async () => {
    // `id` is faked: the image's `sandbox` user does not exist on a test machine.
    const dir = await mkdtemp(join(tmpdir(), 'oi-entrypoint-'));
    try {
      writeFileSync(join(dir, 'id'), '#!/bin/sh\necho 10001\n');
      chmodSync(join(dir, 'id'), 0o755);
      const env = { PATH: `${dir}:/usr/bin:/bin`, OI_BUCKET: 'oi-bucket', OI_PREFIX: 'workspaces/T1/C1/1.2/', OI_STEP_ID: 'step-1', OI_TOKEN: 'token' };
      const result = spawnSync('/bin/bash', [join(imageDir, 'entrypoint.sh'), '--print-gcsfuse-command'], { env, encoding: 'utf8' });
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout.trimEnd().split('\n')).toEqual([
        'gcsfuse',
        '--foreground',
        '--only-dir', 'workspaces/T1/C1/1.2',
        '--implicit-dirs',
        // Without it gcsfuse asks for the bucket's storage layout with an empty prefix, which a token
        // limited to the thread's prefix may not do, and the mount fails.
        '--enable-hns=false',
        '--rename-dir-limit', '10000',
        '--token-url', 'unix:///run/oi-token/token.sock',
        '--uid', '10001', '--gid', '10001',
        '--file-mode', '644', '--dir-mode', '755',
        '-o', 'allow_other',
        'oi-bucket', '/workspace',
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('entrypoint.sh refuses malformed session overrides before touching anything (issue 13)', () => {
    const limits = '{"memoryMb":2048,"cpuSec":600,"maxProcesses":256,"maxFileMb":1024}';
    const session = { OI_BUCKET: 'oi-bucket', OI_PREFIX: 'workspaces/T1/C1/1.2/', OI_TOKEN: 'token', OI_SESSION_ID: 's-1', OI_SESSION_IDLE_SEC: '600', OI_SESSION_END_AT: '1800000000', OI_LIMITS: limits };
    const cases: [Record<string, string>, RegExp][] = [
      [{ ...session, OI_SESSION_ID: '' }, /OI_STEP_ID or OI_SESSION_ID is required/],
      [{ ...session, OI_STEP_ID: 'step-1' }, /exclude each other/],
      [{ ...session, OI_SESSION_ID: 'a/b' }, /invalid OI_SESSION_ID/],
      [{ ...session, OI_SESSION_IDLE_SEC: '0' }, /invalid OI_SESSION_IDLE_SEC/],
      [{ ...session, OI_SESSION_END_AT: 'soon' }, /invalid OI_SESSION_END_AT/],
      [{ ...session, OI_LIMITS: '{"memoryMb":2048}' }, /invalid OI_LIMITS/],
      [{ ...session, OI_LIMITS: `${limits} --user 0:0` }, /invalid OI_LIMITS/],
    ];
    for (const [env, message] of cases) {
      const result = spawnSync('/bin/bash', [join(imageDir, 'entrypoint.sh')], { env: { PATH: '/usr/bin:/bin', ...env }, encoding: 'utf8' });
      expect(result.status, JSON.stringify(env)).not.toBe(0);
      expect(result.stderr, JSON.stringify(env)).toMatch(message);
    }
  });

  it('entrypoint.sh turns gcsfuse\'s metadata caches off for a session, so files written between steps are seen', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'oi-entrypoint-'));
    try {
      writeFileSync(join(dir, 'id'), '#!/bin/sh\necho 10001\n');
      chmodSync(join(dir, 'id'), 0o755);
      const env = {
        PATH: `${dir}:/usr/bin:/bin`,
        OI_BUCKET: 'oi-bucket',
        OI_PREFIX: 'workspaces/T1/C1/1.2/',
        OI_TOKEN: 'token',
        OI_SESSION_ID: 'session-1',
        OI_SESSION_IDLE_SEC: '600',
        OI_SESSION_END_AT: '1800000000',
        OI_LIMITS: '{"memoryMb":2048,"cpuSec":600,"maxProcesses":256,"maxFileMb":1024}',
      };
      const result = spawnSync('/bin/bash', [join(imageDir, 'entrypoint.sh'), '--print-gcsfuse-command'], { env, encoding: 'utf8' });
      expect(result.status, result.stderr).toBe(0);
      const args = result.stdout.trimEnd().split('\n');
      expect(args.slice(0, 3)).toStrictEqual(['gcsfuse', '--foreground', '--only-dir']);
      expect(args.slice(-8)).toStrictEqual([
        '--metadata-cache-ttl-secs', '0',
        '--metadata-cache-negative-ttl-secs', '0',
        '--kernel-list-cache-ttl-secs', '0',
        'oi-bucket', '/workspace',
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('record_libraries.py lists only the requirements that import, with their installed versions', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'oi-libraries-'));
    try {
      const requirements = join(dir, 'requirements.txt');
      writeFileSync(requirements, '# the runner needs dill\ndill==0.0.1\nno-such-library-oi==1.0\n');
      const script = join(imageDir, 'record_libraries.py');
      const result = spawnSync(python, [script, requirements, '--require', 'dill'], { env: { PATH: '/usr/bin:/bin' }, encoding: 'utf8' });
      expect(result.status, result.stderr).toBe(0);
      const libraries = JSON.parse(result.stdout) as Record<string, string>;
      expect(Object.keys(libraries)).toEqual(['dill']);
      expect(libraries.dill).toMatch(/^\d+\.\d+/); // the installed version, not the one asked for
      expect(libraries.dill).not.toBe('0.0.1');
      expect(result.stderr).toMatch(/no-such-library-oi left out \(not installed\)/);

      const missing = spawnSync(python, [script, requirements, '--require', 'no-such-library-oi'], { env: { PATH: '/usr/bin:/bin' }, encoding: 'utf8' });
      expect(missing.status).toBe(1);
      expect(missing.stderr).toMatch(/required but not usable: no-such-library-oi/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

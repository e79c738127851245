import assert from 'node:assert/strict';
import { mkdtemp, mkdir, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { LocalWorkspaceStore, type LocalWorkspace } from '../controller/workspace/local-workspace.js';
import { UnsafePathError, FileNotFoundError } from '../controller/workspace/workspace.js';
import { workspaceContract } from './helpers/workspace-contract.js';

workspaceContract('LocalWorkspace', async () => new LocalWorkspaceStore(await mkdtemp(join(tmpdir(), 'oi-ws-'))));

const thread = { team: 'T1', channel: 'C1', threadTs: '1.2' };

test('LocalWorkspace never follows a symlink out of the workspace', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'oi-ws-'));
  const outside = join(dataDir, 'outside-secret.txt');
  await writeFile(outside, 'secret');
  const workspace = new LocalWorkspaceStore(dataDir).open(thread) as LocalWorkspace;
  await workspace.write('real.txt', 'ok');
  await symlink(outside, join(workspace.root, 'link.txt'));
  await symlink('/etc', join(workspace.root, 'etc-dir'));
  await mkdir(join(workspace.root, 'sub'));
  assert.deepEqual((await workspace.list()).map((entry) => entry.path), ['real.txt']);
  await assert.rejects(workspace.read('link.txt'), FileNotFoundError);
  await assert.rejects(workspace.read('etc-dir/passwd'), UnsafePathError);
  await assert.rejects(workspace.write('etc-dir/evil', 'x'), UnsafePathError);
  await assert.rejects(workspace.write('link.txt', 'overwrite'), UnsafePathError);
  assert.equal(await workspace.stat('link.txt'), undefined);
});

test('LocalWorkspace keeps history outside the workspace folder', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'oi-ws-'));
  const workspace = new LocalWorkspaceStore(dataDir).open(thread) as LocalWorkspace;
  await workspace.writeState('messages', [], null);
  assert.equal(workspace.root, join(dataDir, 'workspaces', 'T1', 'C1', '1.2'));
  assert.equal(workspace.stateDir, join(dataDir, 'threads', 'T1', 'C1', '1.2'));
});

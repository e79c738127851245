import { mkdtemp, mkdir, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
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
  expect((await workspace.list()).map((entry) => entry.path)).toStrictEqual(['real.txt']);
  await expect(workspace.read('link.txt')).rejects.toThrow(FileNotFoundError);
  await expect(workspace.read('etc-dir/passwd')).rejects.toThrow(UnsafePathError);
  await expect(workspace.write('etc-dir/evil', 'x')).rejects.toThrow(UnsafePathError);
  await expect(workspace.write('link.txt', 'overwrite')).rejects.toThrow(UnsafePathError);
  expect(await workspace.stat('link.txt')).toBeUndefined();
});

test('LocalWorkspace keeps history outside the workspace folder', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'oi-ws-'));
  const workspace = new LocalWorkspaceStore(dataDir).open(thread) as LocalWorkspace;
  await workspace.writeState('messages', [], null);
  expect(workspace.root).toBe(join(dataDir, 'workspaces', 'T1', 'C1', '1.2'));
  expect(workspace.stateDir).toBe(join(dataDir, 'threads', 'T1', 'C1', '1.2'));
});

import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';

// Issue 14, finding 6: the history store and state files are readable by the controller only.

const dataDir = mkdtempSync(join(tmpdir(), 'state-modes-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

test('state files are 0600 and their folders 0700, whatever the umask', async () => {
  const previous = process.umask(0o002);
  try {
    const workspace = new LocalWorkspaceStore(dataDir).open({ team: 'T1', channel: 'C1', threadTs: '1700000000.000100' });
    await workspace.writeState('messages', [{ role: 'user', content: 'secret history' }], null);
    const threadsDir = join(dataDir, 'threads');
    const stateDir = join(threadsDir, 'T1', 'C1', '1700000000.000100');
    expect(statSync(join(stateDir, 'messages.json')).mode & 0o777).toBe(0o600);
    for (const dir of [threadsDir, join(threadsDir, 'T1'), join(threadsDir, 'T1', 'C1'), stateDir]) {
      expect(statSync(dir).mode & 0o777, dir).toBe(0o700);
    }
  } finally {
    process.umask(previous);
  }
});

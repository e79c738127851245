/**
 * A second process writing the same thread's history (test/versioned-file.test.ts): appends `count` messages
 * labelled `label`, one appendHistory each, to the thread in DATA_DIR given on the command line.
 */
import { appendHistory } from '../../controller/agent/history.js';
import { LocalWorkspaceStore } from '../../controller/workspace/local-workspace.js';

const [dataDir, label, count] = process.argv.slice(2) as [string, string, string];
const workspace = new LocalWorkspaceStore(dataDir).open({ team: 'T1', channel: 'C1', threadTs: '1700000000.000100' });
for (let index = 0; index < Number(count); index++) {
  await appendHistory(workspace, [{ role: 'user', content: `${label}-${index}` }], 1000);
}

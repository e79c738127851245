import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../controller/logger.js';
import { bubblewrapArguments } from '../controller/sandbox/local/bubblewrap.js';
import { LocalSandbox } from '../controller/sandbox/local/local-sandbox.js';
import { resolvePython } from '../controller/sandbox/local/python.js';
import { isRoot } from '../controller/sandbox/local/sandbox-user.js';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';
import type { Workspace } from '../controller/workspace/workspace.js';
import { median, timed } from './measure.js';
import type { FigureRow } from './report.js';

/**
 * Figure 3: one step through LocalSandbox + runner.py against the same code run by a bare
 * `python3 -c`, and where the time goes.
 *
 * Method: every variant below runs once per repetition, in the same order, and each figure is the
 * median over repetitions (so drift of a noisy machine hits every variant alike). All processes get
 * the sandbox's clean environment (PYTHONDONTWRITEBYTECODE=1 as in the sandbox). Variants:
 *   interpreter   python3 -c pass
 *   bare print    python3 -c 'print(1)'                     (baseline of the print(1) step)
 *   bare pandas   python3 -c '<PANDAS_CODE>'                 (baseline of the pandas step)
 *   imports       python3 -c 'import runner' (runner.py, runner_state, runner_figures; main() not run)
 *   jail          bwrap <the jail's own arguments> python3 -c pass
 *   step plain    LocalSandbox isolation=off, print(1), empty state
 *   step bwrap    LocalSandbox with bubblewrap, print(1), empty state
 *   step pandas   LocalSandbox with bubblewrap, PANDAS_CODE, in a fresh thread (empty state)
 *   restore       LocalSandbox with bubblewrap, print(1) in a thread whose saved state holds
 *                 `pd` and a 1,000-row DataFrame (every step re-imports pandas to restore them)
 *   many files    LocalSandbox with bubblewrap, print(1) in a workspace holding `files` small files
 *                 (both sides walk the workspace every step: the controller to hand it to the
 *                 sandbox uid, the runner to list what changed)
 * Where the time of the bwrap print(1) step goes: interpreter start; isolation = jail - interpreter;
 * runner imports = imports - interpreter; the rest (controller side: step files, chown, spawn;
 * runner side: limits, state, file snapshot, result) = step bwrap - jail - runner imports.
 */

export const PANDAS_CODE = "import pandas as pd; pd.DataFrame({'a': range(1000)}).describe()";
const RUNNER_DIR = fileURLToPath(new URL('../sandbox-image/', import.meta.url));
const ENVIRONMENT = { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/tmp', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', PYTHONDONTWRITEBYTECODE: '1', MPLBACKEND: 'Agg' };

export interface LocalStepOptions {
  repetitions: number;
  /** Files in the workspace of the `many files` variant. */
  files: number;
}

/** Milliseconds from spawn to exit of a command (output discarded); throws when it fails. */
function runCommand(command: string, args: string[], cwd: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { cwd, env: ENVIRONMENT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      const ms = performance.now() - started;
      if (code === 0) resolve(ms);
      else reject(new Error(`${command} ${args.join(' ').slice(0, 200)} failed (${code}): ${stderr.slice(-500)}`));
    });
  });
}

async function step(sandbox: LocalSandbox, workspace: Workspace, code: string): Promise<number> {
  const { ms, value } = await timed(() => sandbox.run(workspace, { language: 'python', code, timeoutSec: 120 }));
  if (value.error !== null) throw new Error(`local step: ${value.error.name}: ${value.error.value}`);
  return ms;
}

/** Small user files in nested folders, as a thread that saved many outputs would hold. */
async function addFiles(workspace: Workspace, count: number): Promise<void> {
  for (let index = 0; index < count; index++) {
    await workspace.write(`outputs/part-${Math.floor(index / 100)}/file-${index}.csv`, `a,b\n${index},${index * 2}\n`);
  }
}

/** The production default (a jail, egress) where this machine can jail; else plain processes. */
export function jailedSandbox(): LocalSandbox {
  try {
    return new LocalSandbox({ network: 'egress', isolation: 'required', logger: silentLogger, searchPath: process.env.PATH });
  } catch {
    return new LocalSandbox({ network: 'egress', isolation: 'off', logger: silentLogger, searchPath: process.env.PATH });
  }
}

export async function localStepBenchmark(options: LocalStepOptions): Promise<{ rows: FigureRow[]; details: unknown }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'oi-bench-step-'));
  const scratch = await mkdtemp(join(tmpdir(), 'oi-bench-scratch-'));
  const plain = new LocalSandbox({ network: 'egress', isolation: 'off', logger: silentLogger });
  const jailed = jailedSandbox();
  try {
    const python = resolvePython(undefined, process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin');
    const store = new LocalWorkspaceStore(dataDir);
    const thread = (name: string) => store.open({ team: 'T1', channel: 'C1', threadTs: `1700000000.${name}` });
    const jailArgs = jailed.isolated
      ? bubblewrapArguments({
          mode: isRoot() ? 'drop-root' : 'user-namespace',
          workspaceDir: scratch,
          runnerDir: RUNNER_DIR,
          python,
          network: true,
          tmpSizeMb: 2048,
          environment: ENVIRONMENT,
        })
      : undefined;

    const plainThread = thread('000001');
    const jailedThread = thread('000002');
    const restoreThread = thread('000003');
    const manyFilesThread = thread('000004');
    await step(jailed, restoreThread, "import pandas as pd\ndf = pd.DataFrame({'a': range(1000)})");
        await addFiles(manyFilesThread, options.files);

    const variants: Record<string, (repetition: number) => Promise<number>> = {
      interpreter: () => runCommand(python.executable, ['-c', 'pass'], scratch),
      barePrint: () => runCommand(python.executable, ['-c', 'print(1)'], scratch),
      barePandas: () => runCommand(python.executable, ['-c', PANDAS_CODE], scratch),
      imports: () => runCommand(python.executable, ['-c', `import sys; sys.path.insert(0, ${JSON.stringify(RUNNER_DIR)}); import runner`], scratch),
      stepPlain: () => step(plain, plainThread, 'print(1)'),
    };
    if (jailArgs !== undefined) {
      Object.assign(variants, {
        jail: () => runCommand('bwrap', [...jailArgs, python.executable, '-c', 'pass'], scratch),
        stepJailed: () => step(jailed, jailedThread, 'print(1)'),
        stepPandas: (repetition: number) => step(jailed, thread(`1${String(repetition).padStart(5, '0')}`), PANDAS_CODE),
        restore: () => step(jailed, restoreThread, 'print(1)'),
        manyFiles: () => step(jailed, manyFilesThread, 'print(1)'),
      });
    }
    const samples: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((name) => [name, []]));
    // Repetition 0 warms the page cache and the sandboxes' first-use costs; it is not counted.
    for (let repetition = 0; repetition <= options.repetitions; repetition++) {
      for (const [name, run] of Object.entries(variants)) {
        const ms = await run(repetition);
        if (repetition > 0) samples[name]!.push(ms);
      }
    }
    const m = Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, median(values)])) as Record<string, number>;
    return { rows: buildRows(m, options, jailArgs !== undefined), details: { medianMs: m, repetitions: options.repetitions, isolation: jailed.describeIsolation() } };
  } finally {
    // The jail keeps ready network namespaces (holder processes): closed, or the benchmark never exits.
    await Promise.all([plain.close(), jailed.close()]);
    await rm(dataDir, { recursive: true, force: true });
    await rm(scratch, { recursive: true, force: true });
  }
}

function buildRows(m: Record<string, number>, options: LocalStepOptions, jailed: boolean): FigureRow[] {
  const figure = '3 local step';
  const rows: FigureRow[] = [
    { key: 'local.printPlain', figure, measure: 'print(1) ms, no isolation', ours: m.stepPlain!, baseline: m.barePrint!, baselineName: 'python3 -c' },
  ];
  if (jailed) {
    rows.push(
      { key: 'local.printJailed', figure, measure: 'print(1) ms, bubblewrap', ours: m.stepJailed!, baseline: m.barePrint!, baselineName: 'python3 -c' },
      { key: 'local.pandasJailed', figure, measure: 'pandas step ms, bubblewrap', ours: m.stepPandas!, baseline: m.barePandas!, baselineName: 'python3 -c' },
      { key: 'local.restore', figure, measure: 'print(1) ms, state: pd + DataFrame', ours: m.restore!, baseline: m.stepJailed!, baselineName: 'empty state' },
      {
        key: 'local.manyFiles',
        figure,
        measure: `print(1) ms, ${options.files} files in workspace`,
        ours: m.manyFiles!,
        baseline: m.stepJailed!,
        baselineName: 'empty workspace',
      },
    );
  }
  const where = (key: string, measure: string, ours: number) => rows.push({ key: `local.where.${key}`, figure, measure, ours });
  where('interpreter', 'where: interpreter start ms', m.interpreter!);
  where('imports', 'where: runner imports ms', m.imports! - m.interpreter!);
  if (jailed) {
    where('isolation', 'where: bubblewrap ms', m.jail! - m.interpreter!);
    where('rest', 'where: step protocol ms (both sides)', m.stepJailed! - m.jail! - (m.imports! - m.interpreter!));
    where('restore', 'where: state restore (pd + df) ms', m.restore! - m.stepJailed!);
  }
  where('pandas', 'where: pandas import + work ms', m.barePandas! - m.barePrint!);
  return rows;
}

/**
 * Mutation check: breaks the bot on purpose, one way at a time, and checks that a test notices.
 *
 *   npm run mutation-check                    # every mutation
 *   npm run mutation-check -- --only bot-id-filter,message-dedup
 *   npm run mutation-check -- --list          # the table, nothing run
 *   npm run mutation-check -- --keep          # keep the temporary copy (its path is printed)
 *
 * The working tree is never touched: the repository's files (tracked and untracked, not ignored, as they are
 * now) are copied into a temporary folder with node_modules linked in; each mutation edits that copy, runs
 * only the tests named for it, and is undone before the next. First the same tests run unmutated: they must
 * pass, or a failure would prove nothing. Exit status 0 when every mutation is caught.
 *
 * MUTATIONS is the one place to update when code moves: each mutation is a file and an exact text that must
 * occur in it exactly once (a mutation whose text is gone is reported as `stale`, never as caught).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

interface Mutation {
  id: string;
  /** What the break does, in a few words. */
  what: string;
  /** The file to edit, relative to the repository root. */
  file: string;
  search: string;
  replace: string;
  /** Test files to run, and a test-name pattern (vitest -t) selecting the tests that should catch it. */
  tests: string[];
  name: string;
}

const MUTATIONS: Mutation[] = [
  {
    id: 'global-turn-queue',
    what: 'all threads of a channel share one lease',
    file: 'controller/workspace/thread-lease.ts',
    search: "return recordName('leases', thread.team, thread.channel, thread.threadTs);",
    replace: "return recordName('leases', thread.team, thread.channel, '1');",
    tests: ['test/e2e-experience.test.ts'],
    name: 'turns of different threads run at the same time',
  },
  {
    id: 'event-id-dedup',
    what: "event_id de-duplication removed from the instance's memory",
    file: 'controller/slack/listeners.ts',
    search: "if (body.event_id !== undefined && !recent.firstTime(`event:${body.event_id}`)) return { ignored: 'event_id seen' };",
    replace: '',
    tests: ['test/e2e-local.test.ts'],
    name: 'a retried or duplicated event starts no second turn',
  },
  {
    id: 'message-dedup',
    what: "channel+ts de-duplication removed from the instance's memory",
    file: 'controller/slack/listeners.ts',
    search: "if (!recent.firstTime(`message:${event.channel}:${event.ts}`)) return { ignored: 'message seen' };",
    replace: '',
    tests: ['test/e2e-local.test.ts'],
    name: 'delivered as app_mention and as message',
  },
  {
    id: 'store-message-dedup',
    what: "the store's message record no longer stops a second delivery",
    file: 'controller/workspace/deliveries.ts',
    search: 'if (ownMessage === undefined) return false;',
    replace: '',
    tests: ['test/multi-instance.test.ts', 'test/deliveries.test.ts'],
    name: 'delivered to both|first delivery is handled',
  },
  {
    id: 'store-event-dedup',
    what: "the store's event_id record is never written",
    file: 'controller/workspace/deliveries.ts',
    search: "event === undefined ? 'none' : this.records.create(event, value)",
    replace: "'none'",
    tests: ['test/multi-instance.test.ts'],
    name: 'redelivered event_id with another payload',
  },
  {
    id: 'gcs-create-overwrites',
    what: 'GCS records written without a generation precondition',
    file: 'controller/workspace/gcs-records.ts',
    search: 'preconditionOpts: { ifGenerationMatch } });',
    replace: '});',
    tests: ['test/records.test.ts'],
    name: 'create-if-absent',
  },
  {
    id: 'gcs-release-unconditional',
    what: 'a lease is deleted whatever was appended since it was read',
    file: 'controller/workspace/gcs-records.ts',
    search: 'await this.file(name).delete({ ifGenerationMatch: generationOf(version) });',
    replace: 'await this.file(name).delete();',
    tests: ['test/thread-lease.test.ts'],
    name: 'lands while the holder releases',
  },
  {
    id: 'local-version-unclaimed',
    what: 'local state writes check the version, then rename (no exclusive claim)',
    file: 'controller/workspace/versioned-file.ts',
    search: 'if (!(await linkExclusive(temporary, claimOf(path, version)))) {',
    replace: 'if (false) {',
    tests: ['test/versioned-file.test.ts'],
    name: 'lose nothing',
  },
  {
    id: 'no-recovery-sweep',
    what: 'instances never look for turns left unfinished',
    file: 'controller/turn/thread-scheduler.ts',
    search: 'void this.sweep();\n    this.sweepTimer = setInterval(() => void this.sweep(), this.options.sweepMs);',
    replace: 'this.sweepTimer = setInterval(() => {}, this.options.sweepMs);',
    tests: ['test/multi-instance.test.ts'],
    name: 'left by an instance that died',
  },
  {
    id: 'stop-model-request',
    what: 'Stop no longer aborts a model request in flight',
    file: 'controller/agent/chat-model.ts',
    search: 'const requestSignal = linkedSignal(request.signal);',
    replace: 'const requestSignal = linkedSignal(undefined);',
    tests: ['test/e2e-experience.test.ts'],
    name: 'Stop while the model is still thinking',
  },
  {
    id: 'bot-id-filter',
    what: 'messages with a bot_id are no longer ignored',
    file: 'controller/slack/listeners.ts',
    search: 'if (event.bot_id !== undefined || event.user === undefined',
    replace: 'if (event.user === undefined',
    tests: ['test/e2e-local.test.ts'],
    name: 'messages from bots',
  },
  {
    id: 'runner-step-alarm',
    what: "the runner never arms its own step alarm (the controller's kill comes later)",
    file: 'sandbox-image/runner_limits.py',
    search: 'signal.setitimer(signal.ITIMER_REAL, float(timeout_sec))',
    replace: 'pass  # mutation: the step alarm is never armed',
    tests: ['test/runner.test.ts', 'test/local-sandbox.test.ts', 'test/runner-session.test.ts'],
    name: 'own alarm|runner stops a step at its timeout itself|variables made before it survive',
  },
  {
    id: 'replies-not-inclusive',
    what: 'conversations.replies called without inclusive',
    file: 'controller/slack/slack-thread.ts',
    search: 'inclusive: true,',
    replace: '',
    tests: ['test/files-in.test.ts'],
    name: 'files missing from the event',
  },
  {
    id: 'replies-oldest-thread',
    what: 'conversations.replies window starts at the thread, not the message',
    file: 'controller/slack/slack-thread.ts',
    search: 'oldest: messageTs,',
    replace: 'oldest: this.threadTs,',
    tests: ['test/files-in.test.ts'],
    name: 'files missing from the event',
  },
  {
    id: 'replies-latest-thread',
    what: 'conversations.replies window ends at the thread, not the message',
    file: 'controller/slack/slack-thread.ts',
    search: 'latest: messageTs,',
    replace: 'latest: this.threadTs,',
    tests: ['test/files-in.test.ts'],
    name: 'files missing from the event',
  },
  {
    id: 'gcs-retry-conditional',
    what: "the Storage client keeps the library's RetryConditional",
    file: 'controller/gcp/gcp-clients.ts',
    search: 'retryOptions: { idempotencyStrategy: IdempotencyStrategy.RetryAlways },',
    replace: 'retryOptions: { idempotencyStrategy: IdempotencyStrategy.RetryConditional },',
    tests: ['test/gcs-workspace.test.ts'],
    name: 'survives one injected 503|still retries reads',
  },
  {
    id: 'bolt-auth-test-again',
    what: 'Bolt is not given the identity auth.test found, so it sends auth.test from its constructor again',
    file: 'controller/slack/slack-app.ts',
    search: '    botId: identity.botId,\n',
    replace: '',
    tests: ['test/startup.test.ts'],
    name: 'Bolt does not ask again',
  },
  {
    id: 'libraries-cache-ignores-list',
    what: 'the library cache outlives a change of requirements.txt',
    file: 'controller/agent/libraries.ts',
    search: 'for (const part of [python, stdout, await readFile(requirementsPath, \'utf8\'), await readFile(script, \'utf8\')])',
    replace: 'for (const part of [python, stdout, await readFile(script, \'utf8\')])',
    tests: ['test/system-prompt.test.ts'],
    name: 'probed again when the list changes',
  },
  {
    id: 'credentials-not-checked',
    what: 'the Cloud Run backend starts without looking for Google credentials',
    file: 'controller/gcp/gcp-clients.ts',
    search: 'usesCredentials: runEndpoint === undefined,',
    replace: 'usesCredentials: false,',
    tests: ['test/startup.test.ts'],
    name: 'without Google credentials',
  },
  {
    id: 'smoke-boundary-always-passes',
    what: "the post-deploy check passes a token check whatever GCS answered",
    file: 'controller/smoke/token-boundary.ts',
    search: "outcome: status === attempt.expected ? 'pass' : 'fail',",
    replace: "outcome: 'pass',",
    tests: ['test/smoke.test.ts'],
    name: 'each broken promise fails its check',
  },
  {
    id: 'session-lazy-start',
    what: 'a Cloud Run session starts only at its first step, not when the mention arrives',
    file: 'controller/sandbox/cloud-run/cloud-run-session.ts',
    search: '    thread.prepare();',
    replace: '',
    tests: ['test/cloud-run-session-turn.test.ts'],
    name: 'starts the execution when the mention arrives',
  },
  {
    id: 'session-open-files-not-flushed',
    what: 'the session runner leaves files the code kept open unflushed (gcsfuse would not upload them)',
    file: 'sandbox-image/runner_session.py',
    search: 'cpu_budget=self.cpu_budget, flush_open_files=True)',
    replace: 'cpu_budget=self.cpu_budget, flush_open_files=False)',
    tests: ['test/runner-session.test.ts'],
    name: 'flushes a file the code keeps open',
  },
  {
    id: 'session-record-not-followed',
    what: 'a controller keeps using its own idea of the session after another one moved the record on',
    file: 'controller/sandbox/cloud-run/session-step.ts',
    search: "    if (!(error instanceof StateConflictError)) throw error;",
    replace: '    throw error;',
    tests: ['test/cloud-run-session-lifecycle.test.ts'],
    name: 'reuses the thread',
  },
  {
    id: 'session-stop-not-sent',
    what: 'Stop in a session never reaches the runner (only the grace period ends the step)',
    file: 'controller/sandbox/cloud-run/session-step.ts',
    search: "await live.send(stopRequestLine(step.id), 'control')",
    replace: 'await Promise.resolve()',
    tests: ['test/cloud-run-sessions.test.ts'],
    name: 'Stop inside a session',
  },
  {
    id: 'stream-no-recipient',
    what: 'chat.startStream without the recipients Slack requires in channels',
    file: 'controller/slack/slack-thread.ts',
    search: 'recipient_user_id: recipient.userId,',
    replace: '',
    tests: ['test/e2e-slack-native.test.ts'],
    name: 'a streamed turn',
  },
  {
    id: 'stream-markdown-per-call',
    what: 'a stream call carries more than 12,000 characters of markdown',
    file: 'controller/slack/slack-stream.ts',
    search: 'const MAX_MARKDOWN_PER_CALL = 12_000;',
    replace: 'const MAX_MARKDOWN_PER_CALL = 120_000;',
    tests: ['test/slack-stream.test.ts'],
    name: 'long answer',
  },
  {
    id: 'native-stop-anyone',
    what: "Slack's own Stop stops the turn whoever pressed it",
    file: 'controller/turn/running-turns.ts',
    search: 'if (turn.thread === thread) return this.stop(id, user);',
    replace: 'if (turn.thread === thread) return this.stop(id, turn.user);',
    tests: ['test/running-turns.test.ts'],
    name: "Slack's own Stop",
  },
  {
    id: 'catch-up-bot-messages',
    what: "the bot's own messages become context in the catch-up",
    file: 'controller/turn/thread-catch-up.ts',
    search: 'if (reply.botId !== undefined || reply.user === undefined',
    replace: 'if (reply.user === undefined',
    tests: ['test/thread-catch-up.test.ts'],
    name: 'first turn reads the thread',
  },
];

type Outcome = 'caught' | 'MISSED' | 'stale' | 'error';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

function main(): void {
  const args = process.argv.slice(2);
  const only = optionValue(args, '--only')?.split(',');
  const selected = only === undefined ? MUTATIONS : MUTATIONS.filter((mutation) => only.includes(mutation.id));
  if (args.includes('--list')) {
    for (const mutation of MUTATIONS) console.log(`${mutation.id.padEnd(24)} ${mutation.file.padEnd(32)} ${mutation.what}`);
    return;
  }
  if (selected.length === 0) throw new Error(`no mutation named ${only?.join(',') ?? ''}; see --list`);
  const copy = copyRepository();
  console.log(`copy of the repository: ${copy}`);
  try {
    const baseline = runTests(copy, selected.flatMap((mutation) => mutation.tests), selected.map((mutation) => mutation.name));
    if (baseline.failed > 0 || baseline.passed === 0) {
      console.log(`baseline: ${baseline.passed} passed, ${baseline.failed} failed: the selected tests must pass unmutated.\n${baseline.output}`);
      process.exitCode = 2;
      return;
    }
    console.log(`baseline: the ${baseline.passed} selected tests pass unmutated (${seconds(baseline.ms)})\n`);
    const rows = selected.map((mutation) => checkMutation(copy, mutation));
    printTable(rows);
    if (rows.some((row) => row.outcome !== 'caught')) process.exitCode = 1;
  } finally {
    if (args.includes('--keep')) console.log(`kept ${copy}`);
    else rmSync(copy, { recursive: true, force: true });
  }
}

/** `--name value` or `--name=value`. */
function optionValue(args: string[], name: string): string | undefined {
  const inline = args.find((arg) => arg.startsWith(`${name}=`));
  if (inline !== undefined) return inline.slice(name.length + 1);
  const index = args.indexOf(name);
  return index === -1 ? undefined : args[index + 1];
}

/** The repository as it is now (tracked and untracked files, not ignored ones), with node_modules linked. */
function copyRepository(): string {
  const copy = mkdtempSync(join(tmpdir(), 'mutation-check-'));
  // mkdtemp makes the folder 0700; tests that run sandbox-image/runner.py as another user (the Cloud Run fake drops
  // to `nobody` when root) must be able to reach it, as they can in the working tree.
  chmodSync(copy, 0o755);
  const listed = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' });
  if (listed.status !== 0) throw new Error(`git ls-files failed: ${listed.stderr}`);
  for (const file of new Set(listed.stdout.split('\0').filter((name) => name !== ''))) {
    const source = join(ROOT, file);
    let mode: number;
    try {
      mode = statSync(source).mode;
    } catch {
      continue; // deleted in the working tree
    }
    mkdirSync(dirname(join(copy, file)), { recursive: true });
    copyFileSync(source, join(copy, file));
    chmodSync(join(copy, file), mode & 0o777);
  }
  symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'), 'dir');
  return copy;
}

interface Row {
  mutation: Mutation;
  outcome: Outcome;
  detail: string;
  ms: number;
}

function checkMutation(copy: string, mutation: Mutation): Row {
  const path = join(copy, mutation.file);
  let original: string;
  try {
    original = readFileSync(path, 'utf8');
  } catch {
    return { mutation, outcome: 'stale', detail: `${mutation.file} does not exist`, ms: 0 };
  }
  const occurrences = original.split(mutation.search).length - 1;
  if (occurrences !== 1) return { mutation, outcome: 'stale', detail: `the text occurs ${occurrences} times in ${mutation.file}`, ms: 0 };
  writeFileSync(path, original.replace(mutation.search, mutation.replace));
  try {
    process.stdout.write(`${mutation.id}: ${mutation.what} … `);
    const run = runTests(copy, mutation.tests, [mutation.name]);
    const outcome: Outcome = run.failed > 0 ? 'caught' : run.passed > 0 ? 'MISSED' : 'error';
    const detail = outcome === 'caught' ? run.failedNames.join('; ') : outcome === 'MISSED' ? `${run.passed} tests passed` : run.output.slice(-2000);
    console.log(outcome);
    return { mutation, outcome, detail, ms: run.ms };
  } finally {
    writeFileSync(path, original);
  }
}

interface TestRun {
  passed: number;
  failed: number;
  failedNames: string[];
  output: string;
  ms: number;
}

/** Runs vitest once in the copy on these files, only the tests whose names match one of the patterns. */
function runTests(copy: string, files: string[], namePatterns: string[]): TestRun {
  const report = join(copy, '.mutation-report.json');
  rmSync(report, { force: true });
  const started = Date.now();
  const run = spawnSync(
    process.execPath,
    ['node_modules/vitest/vitest.mjs', 'run', ...new Set(files), '-t', namePatterns.join('|'), '--reporter=json', `--outputFile=${report}`],
    { cwd: copy, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: { ...process.env, CI: '1' } },
  );
  const ms = Date.now() - started;
  const output = `${run.stdout ?? ''}${run.stderr ?? ''}`;
  try {
    const results = JSON.parse(readFileSync(report, 'utf8')) as {
      numPassedTests: number;
      numFailedTests: number;
      testResults: Array<{ assertionResults: Array<{ status: string; fullName: string }> }>;
    };
    const failedNames = results.testResults.flatMap((file) => file.assertionResults.filter((test) => test.status === 'failed').map((test) => test.fullName));
    return { passed: results.numPassedTests, failed: results.numFailedTests, failedNames, output, ms };
  } catch {
    return { passed: 0, failed: 0, failedNames: [], output, ms };
  }
}

function printTable(rows: Row[]): void {
  console.log('\nmutation                  result   time    caught by');
  for (const row of rows) {
    console.log(`${row.mutation.id.padEnd(25)} ${row.outcome.padEnd(8)} ${seconds(row.ms).padStart(6)}  ${row.detail}`);
  }
  const caught = rows.filter((row) => row.outcome === 'caught').length;
  console.log(`\n${caught} of ${rows.length} mutations caught`);
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(0)} s`;
}

main();

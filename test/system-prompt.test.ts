import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRequirements, preinstalledLibraries } from '../controller/agent/requirements.js';
import { buildSystemPrompt } from '../controller/agent/system-prompt.js';

test('requirements are parsed without versions, extras or comments', () => {
  assert.deepEqual(parseRequirements('# c\npandas==2.2.3\nnumpy>=2 # fast\n\nrequests[socks]\n-r other.txt\nPyMuPDF ; python_version > "3"\n'), [
    'pandas',
    'numpy',
    'requests',
    'PyMuPDF',
  ]);
});

test('the system prompt names every preinstalled library and the working directory', () => {
  const libraries = preinstalledLibraries();
  for (const name of ['pandas', 'matplotlib', 'scikit-learn', 'yfinance', 'PyMuPDF', 'weasyprint', 'easyocr']) {
    assert.ok(libraries.includes(name), `${name} is in sandbox-image/requirements.txt`);
  }
  const prompt = buildSystemPrompt({ libraries, maxSteps: 7, stepTimeoutSec: 30, network: false });
  for (const name of libraries) assert.ok(prompt.includes(name), `${name} is in the prompt`);
  assert.match(prompt, /working directory is this thread's workspace/);
  assert.match(prompt, /at most 7 steps/);
  assert.match(prompt, /no network access/);
});

import { expect, test } from 'vitest';
import { parseRequirements, preinstalledLibraries } from '../controller/agent/requirements.js';
import { buildSystemPrompt } from '../controller/agent/system-prompt.js';

test('requirements are parsed without versions, extras or comments', () => {
  expect(parseRequirements('# c\npandas==2.2.3\nnumpy>=2 # fast\n\nrequests[socks]\n-r other.txt\nPyMuPDF ; python_version > "3"\n')).toStrictEqual([
    'pandas',
    'numpy',
    'requests',
    'PyMuPDF',
  ]);
});

test('the system prompt names every preinstalled library and the working directory', () => {
  const libraries = preinstalledLibraries();
  for (const name of ['pandas', 'matplotlib', 'scikit-learn', 'yfinance', 'PyMuPDF', 'weasyprint', 'easyocr']) {
    expect(libraries, 'sandbox-image/requirements.txt').toContain(name);
  }
  const prompt = buildSystemPrompt({ libraries, maxSteps: 7, stepTimeoutSec: 30, network: false });
  for (const name of libraries) expect(prompt, `${name} is in the prompt`).toContain(name);
  expect(prompt).toMatch(/working directory is this thread's workspace/);
  expect(prompt).toMatch(/at most 7 steps/);
  expect(prompt).toMatch(/no network access/);
});

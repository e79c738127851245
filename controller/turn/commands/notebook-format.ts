/**
 * The parts of the Jupyter notebook format (nbformat 4.5) that the notebook export writes, and a
 * structural check of that format. The check follows `nbformat.v4.5.schema.json` closely enough to
 * catch real mistakes (a missing key, a wrong output shape, a bad cell id) without a JSON-schema
 * dependency; test/notebook.test.ts also runs the real `nbformat` validator when it is installed.
 */

export type MultilineString = string | string[];

export type NotebookOutput =
  | { output_type: 'stream'; name: 'stdout' | 'stderr'; text: MultilineString }
  | { output_type: 'display_data'; data: Record<string, MultilineString>; metadata: Record<string, unknown> }
  | { output_type: 'error'; ename: string; evalue: string; traceback: string[] };

export type NotebookCell =
  | { id: string; cell_type: 'markdown'; metadata: Record<string, unknown>; source: MultilineString }
  | {
      id: string;
      cell_type: 'code';
      metadata: Record<string, unknown>;
      source: MultilineString;
      outputs: NotebookOutput[];
      execution_count: number | null;
    };

export interface Notebook {
  nbformat: 4;
  nbformat_minor: 5;
  metadata: Record<string, unknown>;
  cells: NotebookCell[];
}

const CELL_ID = /^[a-zA-Z0-9_-]{1,64}$/;

const CELL_KEYS: Record<string, { required: string[]; optional: string[] }> = {
  markdown: { required: ['id', 'cell_type', 'metadata', 'source'], optional: ['attachments'] },
  raw: { required: ['id', 'cell_type', 'metadata', 'source'], optional: ['attachments'] },
  code: { required: ['id', 'cell_type', 'metadata', 'source', 'outputs', 'execution_count'], optional: [] },
};

const OUTPUT_KEYS: Record<string, string[]> = {
  stream: ['output_type', 'name', 'text'],
  display_data: ['output_type', 'data', 'metadata'],
  execute_result: ['output_type', 'data', 'metadata', 'execution_count'],
  error: ['output_type', 'ename', 'evalue', 'traceback'],
};

/** Problems with `notebook` as an nbformat 4.5 document; an empty list means it is valid. */
export function validateNotebookStructure(notebook: unknown): string[] {
  const problems: string[] = [];
  if (!isObject(notebook)) return ['the notebook is not a JSON object'];
  checkKeys(notebook, ['nbformat', 'nbformat_minor', 'metadata', 'cells'], [], 'notebook', problems);
  if (notebook.nbformat !== 4) problems.push('notebook.nbformat must be 4');
  if (!Number.isInteger(notebook.nbformat_minor) || (notebook.nbformat_minor as number) < 5) {
    problems.push('notebook.nbformat_minor must be an integer >= 5 (cell ids need 4.5)');
  }
  if (!isObject(notebook.metadata)) problems.push('notebook.metadata must be an object');
  else checkNotebookMetadata(notebook.metadata, problems);
  if (!Array.isArray(notebook.cells)) return [...problems, 'notebook.cells must be an array'];

  const seenIds = new Set<string>();
  notebook.cells.forEach((cell: unknown, index) => {
    const where = `cells[${index}]`;
    if (!isObject(cell)) {
      problems.push(`${where} is not an object`);
      return;
    }
    const keys = typeof cell.cell_type === 'string' ? CELL_KEYS[cell.cell_type] : undefined;
    if (keys === undefined) {
      problems.push(`${where}.cell_type must be markdown, code or raw (got ${JSON.stringify(cell.cell_type)})`);
      return;
    }
    checkKeys(cell, keys.required, keys.optional, where, problems);
    if (typeof cell.id !== 'string' || !CELL_ID.test(cell.id)) {
      problems.push(`${where}.id must be 1-64 characters of [a-zA-Z0-9_-] (got ${JSON.stringify(cell.id)})`);
    } else if (seenIds.has(cell.id)) {
      problems.push(`${where}.id ${JSON.stringify(cell.id)} is not unique`);
    } else seenIds.add(cell.id);
    if (!isObject(cell.metadata)) problems.push(`${where}.metadata must be an object`);
    if (!isMultiline(cell.source)) problems.push(`${where}.source must be a string or an array of strings`);
    if (cell.cell_type !== 'code') return;
    if (!isExecutionCount(cell.execution_count)) problems.push(`${where}.execution_count must be a non-negative integer or null`);
    if (!Array.isArray(cell.outputs)) problems.push(`${where}.outputs must be an array`);
    else cell.outputs.forEach((output: unknown, outputIndex) => checkOutput(output, `${where}.outputs[${outputIndex}]`, problems));
  });
  return problems;
}

function checkNotebookMetadata(metadata: Record<string, unknown>, problems: string[]): void {
  const { kernelspec, language_info: languageInfo } = metadata;
  if (kernelspec !== undefined) {
    if (!isObject(kernelspec) || typeof kernelspec.name !== 'string' || typeof kernelspec.display_name !== 'string') {
      problems.push('notebook.metadata.kernelspec needs string name and display_name');
    }
  }
  if (languageInfo !== undefined && (!isObject(languageInfo) || typeof languageInfo.name !== 'string')) {
    problems.push('notebook.metadata.language_info needs a string name');
  }
}

function checkOutput(output: unknown, where: string, problems: string[]): void {
  if (!isObject(output)) {
    problems.push(`${where} is not an object`);
    return;
  }
  const keys = typeof output.output_type === 'string' ? OUTPUT_KEYS[output.output_type] : undefined;
  if (keys === undefined) {
    problems.push(`${where}.output_type must be stream, display_data, execute_result or error (got ${JSON.stringify(output.output_type)})`);
    return;
  }
  checkKeys(output, keys, [], where, problems);
  switch (output.output_type) {
    case 'stream':
      if (typeof output.name !== 'string') problems.push(`${where}.name must be a string (stdout or stderr)`);
      if (!isMultiline(output.text)) problems.push(`${where}.text must be a string or an array of strings`);
      break;
    case 'error':
      if (typeof output.ename !== 'string') problems.push(`${where}.ename must be a string`);
      if (typeof output.evalue !== 'string') problems.push(`${where}.evalue must be a string`);
      if (!Array.isArray(output.traceback) || !output.traceback.every((line) => typeof line === 'string')) {
        problems.push(`${where}.traceback must be an array of strings`);
      }
      break;
    case 'execute_result':
      if (!isExecutionCount(output.execution_count)) problems.push(`${where}.execution_count must be a non-negative integer or null`);
    // falls through: execute_result carries a mime bundle like display_data
    case 'display_data':
      if (!isObject(output.metadata)) problems.push(`${where}.metadata must be an object`);
      if (!isObject(output.data)) problems.push(`${where}.data must be an object (a mime bundle)`);
      else {
        for (const [mime, value] of Object.entries(output.data)) {
          // JSON mime types may hold any JSON value; all others are text or base64 text.
          if (!/^application\/(.*\+)?json$/.test(mime) && !isMultiline(value)) {
            problems.push(`${where}.data[${JSON.stringify(mime)}] must be a string or an array of strings`);
          }
        }
      }
      break;
  }
}

/** Required keys present and, as the schema says `additionalProperties: false`, no others. */
function checkKeys(value: Record<string, unknown>, required: string[], optional: string[], where: string, problems: string[]): void {
  for (const key of required) if (!(key in value)) problems.push(`${where} is missing "${key}"`);
  for (const key of Object.keys(value)) {
    if (!required.includes(key) && !optional.includes(key)) problems.push(`${where} has unexpected key "${key}"`);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isMultiline(value: unknown): boolean {
  return typeof value === 'string' || (Array.isArray(value) && value.every((line) => typeof line === 'string'));
}

function isExecutionCount(value: unknown): boolean {
  return value === null || (Number.isInteger(value) && (value as number) >= 0);
}

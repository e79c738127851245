/**
 * The shape of controller/ (docs/architecture.md, Layers), checked on every `npm test`:
 * - no import cycle among controller files, type-only imports included (an import cycle of types is still a tangle);
 * - each folder imports only the layers below it (slack/ never imports turn/ or agent/, ...);
 * - only the composition roots read process.env;
 * - no file over 350 lines, no function over 60 lines;
 * - no dead exports: a function, class or constant is exported only when another file (controller, test or
 *   bench) imports it; an exported type is at least part of an exported signature.
 *
 * Written over TypeScript's own parser (already a devDependency) rather than with madge or dependency-cruiser:
 * it sees exactly the imports tsc sees, `import type` and `export … from` included, and the layer table below
 * is the documentation of the rule.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, test } from 'vitest';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const CONTROLLER = join(ROOT, 'controller');

/**
 * What each part of controller/ may import (besides itself). Read top to bottom: a part sees only the parts
 * above it. The composition roots (main.ts, create-bot.ts) may import anything.
 */
const LAYERS: Record<string, string[]> = {
  'errors.ts': [],
  'logger.ts': [],
  'text.ts': [],
  'config-schema.ts': [],
  'config.ts': ['errors.ts', 'config-schema.ts'],
  'workspace/': ['errors.ts', 'logger.ts'],
  'sandbox/': ['errors.ts', 'logger.ts', 'text.ts', 'workspace/'],
  'gcp/': ['errors.ts', 'logger.ts', 'config.ts', 'workspace/', 'sandbox/'],
  'retention/': ['errors.ts', 'logger.ts', 'config.ts', 'workspace/', 'gcp/'],
  'slack/': ['errors.ts', 'logger.ts', 'text.ts', 'config.ts', 'workspace/', 'sandbox/'],
  'agent/': ['errors.ts', 'logger.ts', 'text.ts', 'workspace/', 'sandbox/'],
  'turn/': ['errors.ts', 'logger.ts', 'text.ts', 'config.ts', 'workspace/', 'sandbox/', 'slack/', 'agent/'],
  'smoke/': ['errors.ts', 'logger.ts', 'config.ts', 'workspace/', 'sandbox/', 'gcp/', 'agent/'],
  'create-bot.ts': ['*'],
  'main.ts': ['*'],
};

/** The programs' entry points: the only files that read the environment. */
const COMPOSITION_ROOTS = ['main.ts', 'retention/retention-cli.ts', 'smoke/smoke-cli.ts'];
const MAX_FILE_LINES = 350;
const MAX_FUNCTION_LINES = 60;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

function parse(path: string): ts.SourceFile {
  return ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.ES2023, true);
}

interface ImportEdge {
  /** Absolute path of the imported .ts file. */
  target: string;
  /** Named bindings taken from it (`*` for a namespace import or a dynamic import). */
  names: string[];
}

/** Every relative import of a file: static, `import type`, `export … from` and `import()`. */
function importsOf(source: ts.SourceFile): ImportEdge[] {
  const edges: ImportEdge[] = [];
  const add = (specifier: ts.Expression | undefined, names: string[]) => {
    if (specifier === undefined || !ts.isStringLiteral(specifier) || !specifier.text.startsWith('.')) return;
    edges.push({ target: resolve(dirname(source.fileName), specifier.text.replace(/\.js$/, '.ts')), names });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      const bindings = clause?.namedBindings;
      const names = bindings === undefined ? [] : ts.isNamespaceImport(bindings) ? ['*'] : bindings.elements.map((element) => (element.propertyName ?? element.name).text);
      add(node.moduleSpecifier, clause?.name === undefined ? names : [...names, 'default']);
    } else if (ts.isExportDeclaration(node)) {
      const clause = node.exportClause;
      add(node.moduleSpecifier, clause === undefined || !ts.isNamedExports(clause) ? ['*'] : clause.elements.map((element) => (element.propertyName ?? element.name).text));
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node.arguments[0], ['*']);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return edges;
}

/** The part of controller/ a file belongs to: `turn/`, `main.ts`, ... */
function partOf(path: string): string {
  const inside = relative(CONTROLLER, path);
  const slash = inside.indexOf('/');
  return slash < 0 ? inside : inside.slice(0, slash + 1);
}

const controllerFiles = sourceFiles(CONTROLLER);
const sources = new Map(controllerFiles.map((path) => [path, parse(path)]));
const graph = new Map(controllerFiles.map((path) => [path, importsOf(sources.get(path)!)]));
const name = (path: string) => relative(ROOT, path);

/** Cycles as lists of files (each found once, from its first file in a depth-first walk). */
function findCycles(): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, 'active' | 'done'>();
  const stack: string[] = [];
  const walk = (file: string) => {
    state.set(file, 'active');
    stack.push(file);
    for (const { target } of graph.get(file) ?? []) {
      if (state.get(target) === 'active') cycles.push([...stack.slice(stack.indexOf(target)), target].map(name));
      else if (state.get(target) === undefined && graph.has(target)) walk(target);
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of controllerFiles) if (state.get(file) === undefined) walk(file);
  return cycles;
}

/** Line count of every function-like body longer than the limit, as `file:line name (n lines)`. */
function longFunctions(source: ts.SourceFile): string[] {
  const found: string[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body !== undefined) {
      const body = node.body as ts.Node;
      const start = source.getLineAndCharacterOfPosition(body.getStart(source)).line;
      const end = source.getLineAndCharacterOfPosition(body.getEnd()).line;
      if (end - start + 1 > MAX_FUNCTION_LINES) {
        const label = node.name !== undefined && 'text' in node.name ? node.name.text : '(anonymous)';
        found.push(`${name(source.fileName)}:${start + 1} ${label} (${end - start + 1} lines)`);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** Names a module exports (declarations with `export`, and `export { … }` lists), and whether each is a type. */
function exportedNames(source: ts.SourceFile): Array<{ name: string; isType: boolean }> {
  const names: Array<{ name: string; isType: boolean }> = [];
  for (const statement of source.statements) {
    const modifiers = ts.canHaveModifiers(statement) ? ts.getModifiers(statement) : undefined;
    const exported = modifiers?.some((modifier) => modifier.kind === ts.SyntaxKind.ExportKeyword) ?? false;
    const isType = ts.isInterfaceDeclaration(statement) || ts.isTypeAliasDeclaration(statement);
    if (exported && ts.isVariableStatement(statement)) {
      for (const declaration of statement.declarationList.declarations) {
        if (ts.isIdentifier(declaration.name)) names.push({ name: declaration.name.text, isType: false });
      }
    } else if (exported && 'name' in statement && statement.name !== undefined && ts.isIdentifier(statement.name as ts.Node)) {
      names.push({ name: (statement.name as ts.Identifier).text, isType });
    } else if (ts.isExportDeclaration(statement) && statement.moduleSpecifier === undefined && statement.exportClause && ts.isNamedExports(statement.exportClause)) {
      names.push(...statement.exportClause.elements.map((element) => ({ name: element.name.text, isType: statement.isTypeOnly })));
    }
  }
  return names;
}

/** True when `identifier` appears in the file besides its own declaration. */
function usedInside(source: ts.SourceFile, identifier: string): boolean {
  let count = 0;
  const visit = (node: ts.Node) => {
    if (ts.isIdentifier(node) && node.text === identifier) count += 1;
    ts.forEachChild(node, visit);
  };
  visit(source);
  return count > 1;
}

/** True when the file reads `process.env` (code, not comments). */
function readsEnvironment(source: ts.SourceFile): boolean {
  let found = false;
  const visit = (node: ts.Node) => {
    if (ts.isPropertyAccessExpression(node) && node.name.text === 'env' && ts.isIdentifier(node.expression) && node.expression.text === 'process') found = true;
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

describe('controller architecture', () => {
  test('no import cycles, type-only imports included', () => {
    expect(findCycles()).toStrictEqual([]);
  });

  test('each part imports only the layers below it', () => {
    const violations: string[] = [];
    for (const [file, edges] of graph) {
      const part = partOf(file);
      const allowed = LAYERS[part];
      if (allowed === undefined) {
        violations.push(`${name(file)}: ${part} is not in the layer table`);
        continue;
      }
      for (const { target } of edges) {
        const targetPart = partOf(target);
        if (targetPart !== part && !allowed.includes('*') && !allowed.includes(targetPart)) {
          violations.push(`${name(file)} imports ${name(target)} (${part} may import ${allowed.join(', ') || 'nothing'})`);
        }
      }
    }
    expect(violations).toStrictEqual([]);
  });

  test('only the composition roots read process.env', () => {
    const readers = controllerFiles.filter((file) => readsEnvironment(sources.get(file)!)).map((file) => relative(CONTROLLER, file));
    expect(readers.sort()).toStrictEqual([...COMPOSITION_ROOTS].sort());
  });

  test(`no file over ${MAX_FILE_LINES} lines, no function over ${MAX_FUNCTION_LINES} lines`, () => {
    const longFiles = controllerFiles
      .map((file) => [name(file), sources.get(file)!.text.split('\n').length] as const)
      .filter(([, lines]) => lines > MAX_FILE_LINES);
    expect(longFiles).toStrictEqual([]);
    expect(controllerFiles.flatMap((file) => longFunctions(sources.get(file)!))).toStrictEqual([]);
  });

  test('no dead exports', () => {
    const importers = [...controllerFiles, ...sourceFiles(join(ROOT, 'test')), ...sourceFiles(join(ROOT, 'bench'))];
    const used = new Map<string, Set<string>>();
    for (const file of importers) {
      const edges = graph.get(file) ?? importsOf(parse(file));
      for (const { target, names } of edges) {
        const set = used.get(target) ?? new Set<string>();
        for (const imported of names) set.add(imported);
        used.set(target, set);
      }
    }
    const dead: string[] = [];
    for (const file of controllerFiles) {
      const names = used.get(file) ?? new Set<string>();
      if (names.has('*')) continue;
      for (const exported of exportedNames(sources.get(file)!)) {
        if (names.has(exported.name) || (exported.isType && usedInside(sources.get(file)!, exported.name))) continue;
        dead.push(`${name(file)}: ${exported.name}`);
      }
    }
    expect(dead).toStrictEqual([]);
  });
});

/**
 * One logger passed everywhere: JSON lines with a `severity` field (Cloud Logging reads it).
 * Never log code, tool output, message text or tokens: callers pass ids and sizes only.
 */
export type Severity = 'DEBUG' | 'INFO' | 'WARNING' | 'ERROR';

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

const order: Record<Severity, number> = { DEBUG: 0, INFO: 1, WARNING: 2, ERROR: 3 };

export function createLogger(options: {
  level?: Severity;
  write?: (line: string) => void;
  base?: Record<string, unknown>;
} = {}): Logger {
  const minimum = order[options.level ?? 'INFO'];
  const write = options.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const base = options.base ?? {};
  const emit = (severity: Severity, message: string, fields?: Record<string, unknown>) => {
    if (order[severity] < minimum) return;
    write(JSON.stringify({ severity, time: new Date().toISOString(), message, ...base, ...fields }));
  };
  return {
    debug: (message, fields) => emit('DEBUG', message, fields),
    info: (message, fields) => emit('INFO', message, fields),
    warn: (message, fields) => emit('WARNING', message, fields),
    error: (message, fields) => emit('ERROR', message, fields),
    child: (fields) => createLogger({ ...options, base: { ...base, ...fields } }),
  };
}

/** A logger that drops everything (tests that do not read logs). */
export const silentLogger: Logger = createLogger({ write: () => {} });

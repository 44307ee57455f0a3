/** A pino-compatible logger: the first argument may be an object of fields, then a message. */
export interface LogFn {
  (message: string, ...args: unknown[]): void;
  (fields: Record<string, unknown>, message?: string, ...args: unknown[]): void;
}

export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  /** Optional, as in pino: a logger that adds `bindings` to every line. */
  child?(bindings: Record<string, unknown>): Logger;
}

const noop: LogFn = () => {};

/** The default logger: prints nothing. Library code never writes to the console. */
export const silentLogger: Logger = Object.freeze({
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => silentLogger,
});

/** `logger.child(bindings)` where the logger supports it, else the logger itself. */
export function childLogger(logger: Logger, bindings: Record<string, unknown>): Logger {
  return typeof logger.child === 'function' ? logger.child(bindings) : logger;
}

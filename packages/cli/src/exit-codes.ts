/**
 * The exit codes and the error type of `shardline`: no dependency, so that usage errors and `--help`
 * answer without loading the AWS SDK.
 */
/** The process exit codes of `shardline` (documented in the package README). */
export const EXIT_CODES = Object.freeze({
  /** Done. */
  OK: 0,
  /** Any other failure (a Kinesis error, a record Kinesis refused). */
  FAILURE: 1,
  /** Bad usage: an unknown or invalid option, a missing argument, bad input (stdin line N). */
  USAGE: 2,
  /** The stream does not exist. */
  NOT_FOUND: 3,
  /** Kinesis could not be reached (connection refused, DNS, timeout). */
  UNREACHABLE: 4,
  /** Credentials missing, rejected or lacking permission. */
  ACCESS_DENIED: 5,
  /** Interrupted by Ctrl-C (SIGINT), after a graceful stop. */
  INTERRUPTED: 130,
});

/** An error that knows its message for the user and its exit code. */
export class CliError extends Error {
  override readonly name = 'CliError';
  readonly exitCode: number;

  constructor(message: string, exitCode: number, options?: { cause?: unknown }) {
    super(message, options);
    this.exitCode = exitCode;
  }
}

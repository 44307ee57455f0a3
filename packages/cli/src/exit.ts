/**
 * Exit codes and the one place that turns any error into a message and an exit code.
 */
import { classifyAwsError, ErrorCodes, networkErrorCode, rootCause } from '@shardline/common';
import { CliError, EXIT_CODES } from './exit-codes.js';

export { CliError, EXIT_CODES } from './exit-codes.js';

/** What an error is about, to word its message. */
export interface ErrorContext {
  stream?: string;
  endpoint?: string;
}

/**
 * Why nothing answered, or undefined when something did: a network error code (the library's one
 * list, NETWORK_ERROR_CODES in @shardline/common), or 'timed out' for the SDK's own timeouts.
 */
export function unreachableReason(error: unknown): string | undefined {
  const code = networkErrorCode(error);
  if (code !== undefined) return code;
  for (const candidate of [error, rootCause(error)]) {
    if ((candidate as { name?: unknown } | null)?.name === 'TimeoutError') return 'timed out';
  }
  return undefined;
}

/** The message and exit code for `error`. */
export function toCliError(error: unknown, context: ErrorContext = {}): CliError {
  if (error instanceof CliError) return error;
  const root = rootCause(error) as { message?: unknown } | null;
  const rootMessage = typeof root?.message === 'string' ? root.message : String(root);
  if (/region is missing/i.test(rootMessage)) {
    return new CliError(
      'no AWS region: pass --region or set AWS_REGION (with --endpoint it defaults to us-east-1)',
      EXIT_CODES.USAGE,
      { cause: error },
    );
  }
  const unreachable = unreachableReason(error);
  if (unreachable !== undefined) {
    const where = context.endpoint === undefined ? 'Kinesis' : `Kinesis at ${context.endpoint}`;
    return new CliError(`cannot reach ${where} (${unreachable})`, EXIT_CODES.UNREACHABLE, { cause: error });
  }
  if ((root as { name?: unknown } | null)?.name === 'CredentialsProviderError') {
    return new CliError(
      `no AWS credentials: ${rootMessage} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)`,
      EXIT_CODES.ACCESS_DENIED,
      { cause: error },
    );
  }
  const classified = classifyAwsError(error);
  switch (classified.code) {
    case ErrorCodes.NOT_FOUND:
      return new CliError(
        context.stream === undefined ? classified.message : `stream '${context.stream}' not found`,
        EXIT_CODES.NOT_FOUND,
        { cause: error },
      );
    case ErrorCodes.ACCESS_DENIED:
      return new CliError(`access denied: ${rootMessage}`, EXIT_CODES.ACCESS_DENIED, { cause: error });
    case ErrorCodes.INVALID_OPTION:
    case ErrorCodes.INVALID_RECORD:
    case ErrorCodes.CODEC:
      return new CliError(classified.message, EXIT_CODES.USAGE, { cause: error });
    default:
      return new CliError(classified.message, EXIT_CODES.FAILURE, { cause: error });
  }
}

/**
 * One list of network error codes: what the library retries as transient (NETWORK_ERROR_CODES in
 * @shardline/common) is what the CLI reports as "cannot reach Kinesis" (exit 4), and nothing else.
 */
import { classifyAwsError, ErrorCodes, NETWORK_ERROR_CODES, networkErrorCode } from '@shardline/common';
import { expect } from 'chai';
import { EXIT_CODES, toCliError, unreachableReason } from '../../../packages/cli/src/exit.js';

const systemError = (code: string) => Object.assign(new Error(`connect ${code} 127.0.0.1:1`), { code });

describe('network error codes (common and the CLI)', () => {
  it('the list holds the codes of refused, reset, timed-out, unresolvable and dropped connections', () => {
    expect(NETWORK_ERROR_CODES).to.include.members([
      'ECONNREFUSED',
      'ECONNRESET',
      'ETIMEDOUT',
      'ENOTFOUND',
      'EAI_AGAIN',
      'EHOSTUNREACH',
      'ENETUNREACH',
      'UND_ERR_SOCKET',
      'ERR_HTTP2_SESSION_ERROR',
    ]);
    expect(Object.isFrozen(NETWORK_ERROR_CODES)).to.equal(true);
  });

  it('every code is transient for the library and exit 4 for the CLI, also behind a wrapper', () => {
    for (const code of NETWORK_ERROR_CODES) {
      const wrapped = new Error('request failed', { cause: systemError(code) });
      expect(networkErrorCode(wrapped), code).to.equal(code);
      const classified = classifyAwsError(wrapped);
      expect([classified.code, classified.retriable], code).to.deep.equal([ErrorCodes.TRANSIENT, true]);
      const cli = toCliError(wrapped, { endpoint: 'http://127.0.0.1:1' });
      expect([cli.message, cli.exitCode], code).to.deep.equal([
        `cannot reach Kinesis at http://127.0.0.1:1 (${code})`,
        EXIT_CODES.UNREACHABLE,
      ]);
    }
  });

  it('finds the code inside an AggregateError (happy eyeballs) for both', () => {
    const aggregate = new AggregateError(
      [new Error('no code'), systemError('EHOSTUNREACH')],
      'connect failed',
    );
    expect(networkErrorCode(aggregate)).to.equal('EHOSTUNREACH');
    expect(classifyAwsError(aggregate).code).to.equal(ErrorCodes.TRANSIENT);
    expect(unreachableReason(aggregate)).to.equal('EHOSTUNREACH');
  });

  it('other codes are not network failures: not "cannot reach" for the CLI either', () => {
    const other = Object.assign(new Error('disk'), { code: 'ENOSPC' });
    expect(networkErrorCode(other)).to.equal(undefined);
    expect(unreachableReason(other)).to.equal(undefined);
    expect(toCliError(other).exitCode).to.equal(EXIT_CODES.FAILURE);
    // The SDK's own timeouts have no code: the CLI still reports them as unreachable.
    const timeout = Object.assign(new Error('Connection timed out after 5000 ms'), { name: 'TimeoutError' });
    expect(unreachableReason(timeout)).to.equal('timed out');
  });
});

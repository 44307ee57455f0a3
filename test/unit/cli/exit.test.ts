import { ShardlineOptionError } from '@shardline/common';
import { expect } from 'chai';
import { CliError, EXIT_CODES, toCliError } from '../../../packages/cli/src/exit.js';

function awsError(name: string, message: string, status = 400): Error {
  return Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status } });
}

describe('cli toCliError', () => {
  it('a missing stream names the stream: exit 3', () => {
    const error = toCliError(awsError('ResourceNotFoundException', 'Stream s under account 1 not found.'), {
      stream: 'orders',
    });
    expect([error.message, error.exitCode]).to.deep.equal(["stream 'orders' not found", 3]);
  });

  it('nothing answering is exit 4, also behind a wrapper and as an AggregateError (happy eyeballs)', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    const wrapped = new Error('request failed', { cause: refused });
    expect(toCliError(wrapped, { endpoint: 'http://127.0.0.1:1' })).to.include({
      message: 'cannot reach Kinesis at http://127.0.0.1:1 (ECONNREFUSED)',
      exitCode: EXIT_CODES.UNREACHABLE,
    });
    const aggregate = new AggregateError([refused, refused], 'connect failed');
    expect(toCliError(aggregate).exitCode).to.equal(4);
    const timeout = Object.assign(new Error('Connection timed out after 5000 ms'), { name: 'TimeoutError' });
    expect(toCliError(timeout)).to.include({ message: 'cannot reach Kinesis (timed out)', exitCode: 4 });
  });

  it('credentials and permissions are exit 5', () => {
    const missing = Object.assign(new Error('Could not load credentials from any providers'), {
      name: 'CredentialsProviderError',
    });
    expect(toCliError(missing).message).to.match(/^no AWS credentials: Could not load credentials/);
    expect(toCliError(missing).exitCode).to.equal(5);
    expect(toCliError(awsError('AccessDeniedException', 'not authorized')).exitCode).to.equal(5);
  });

  it('usage and input errors are exit 2; a missing region says what to pass', () => {
    expect(
      toCliError(new ShardlineOptionError('codec', "must be one of 'json' (got 'x')")).exitCode,
    ).to.equal(2);
    const region = toCliError(new Error('Region is missing'));
    expect(region.exitCode).to.equal(2);
    expect(region.message).to.match(/pass --region or set AWS_REGION/);
  });

  it('other Kinesis errors are exit 1; a CliError passes through', () => {
    expect(toCliError(awsError('SomethingUnexpectedException', 'odd')).exitCode).to.equal(1);
    const own = new CliError('mine', 7);
    expect(toCliError(own)).to.equal(own);
  });
});

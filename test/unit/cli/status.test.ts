import { ErrorCodes, ShardlineError } from '@shardline/common';
import { expect } from 'chai';
import { redisFailure } from '../../../packages/cli/src/commands/status.js';
import { EXIT_CODES } from '../../../packages/cli/src/exit.js';

describe('cli status: Redis failures', () => {
  const url = 'redis://user:s3cret@redis.example:6379/2';

  it('unreachable (retriable ERR_REDIS): exit 4, the server without its password, the reason kept', () => {
    const error = new ShardlineError(
      ErrorCodes.REDIS,
      'Redis listLeases failed (redis://user:***@redis.example:6379/2): connect ECONNREFUSED 10.0.0.1:6379',
      { retriable: true },
    );
    const failure = redisFailure(error, url);
    expect(failure.exitCode).to.equal(EXIT_CODES.UNREACHABLE);
    expect(failure.message).to.equal(
      'cannot reach Redis at redis://user:***@redis.example:6379/2 (connect ECONNREFUSED 10.0.0.1:6379)',
    );
    expect(failure.message).not.to.include('s3cret');
    expect(failure.cause).to.equal(error);
  });

  it('credentials refused: exit 5', () => {
    const error = new ShardlineError(
      ErrorCodes.REDIS,
      'Redis listLeases failed (redis://user:***@redis.example:6379/2): WRONGPASS invalid username-password pair',
      { retriable: false },
    );
    const failure = redisFailure(error, url);
    expect(failure.exitCode).to.equal(EXIT_CODES.ACCESS_DENIED);
    expect(failure.message).to.match(
      /^Redis at redis:\/\/user:\*\*\*@redis\.example:6379\/2 refused access: .*WRONGPASS/,
    );
  });

  it('any other Redis error reply, or another error: exit 1 with its message', () => {
    const reply = new ShardlineError(ErrorCodes.REDIS, 'Redis listLeases failed (x): WRONGTYPE Operation', {
      retriable: false,
    });
    expect(redisFailure(reply, url).exitCode).to.equal(EXIT_CODES.FAILURE);
    expect(redisFailure(reply, url).message).to.equal(reply.message);
    expect(redisFailure(new Error('boom'), url).exitCode).to.equal(EXIT_CODES.FAILURE);
  });
});

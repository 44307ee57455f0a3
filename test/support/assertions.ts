import type { ShardlineError } from '@shardline/common';
import { ErrorCodes } from '@shardline/common';
import { expect } from 'chai';

/** The error `promise` rejects with; fails the test when it resolves. */
export async function rejection<E = ShardlineError>(promise: Promise<unknown>): Promise<E> {
  try {
    await promise;
  } catch (error) {
    return error as E;
  }
  throw new Error('expected a rejection, but the promise resolved');
}

/** The option error thrown by `fn`: code ERR_INVALID_OPTION, naming `option`. */
export function optionError(fn: () => unknown, option: string, pattern?: RegExp): Error & { code?: string } {
  try {
    fn();
  } catch (error) {
    const e = error as Error & { code?: string; option?: string };
    expect(e.code, e.message).to.equal(ErrorCodes.INVALID_OPTION);
    expect(e.option, e.message).to.equal(option);
    expect(e.message.startsWith(option), e.message).to.equal(true);
    if (pattern !== undefined) expect(e.message).to.match(pattern);
    return e;
  }
  return expect.fail(`expected an option error naming ${option}`);
}

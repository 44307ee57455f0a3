import { once } from 'node:events';
import { MessageChannel } from 'node:worker_threads';
import { ErrorCodes } from '@shardline/common';
import type { ShardReaderTask } from '@shardline/shard-worker';
import shardReaderTask from '@shardline/shard-worker/worker';
import { expect } from 'chai';
import { rejection } from '../../support/assertions.js';

describe('shard-worker task entry', () => {
  it('rejects a task without ports, naming the field', async () => {
    const error = await rejection(shardReaderTask({ options: {} } as unknown as ShardReaderTask));
    expect(error.code).to.equal(ErrorCodes.INVALID_OPTION);
    expect(error.message).to.match(/^task\.controlPort must be a MessagePort/);
  });

  it('rejects invalid reader options before sending anything, and closes both ports', async () => {
    const data = new MessageChannel();
    const control = new MessageChannel();
    const messages: unknown[] = [];
    data.port1.on('message', (m) => messages.push(m));
    const closed = Promise.all([once(data.port1, 'close'), once(control.port1, 'close')]);
    const error = await rejection(
      shardReaderTask({
        port: data.port2,
        controlPort: control.port2,
        options: {
          streamName: 's',
          shardId: 'shardId-0',
          fetchRatePerShard: 10,
          kinesis: { region: 'us-east-1' },
        },
      }),
    );
    expect(error.message).to.match(/^fetchRatePerShard must be a number > 0 and <= 5/);
    await closed;
    expect(messages).to.deep.equal([]);
  });
});

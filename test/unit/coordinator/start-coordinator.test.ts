import { startCoordinator } from '@shardline/coordinator';
import { expect } from 'chai';
import { rejection } from '../../support/assertions.js';

describe('startCoordinator option checks', () => {
  const base = {
    streamName: 'orders',
    group: 'g',
    kinesis: { region: 'eu-west-1', endpoint: 'http://127.0.0.1:1' },
  };

  it('rejects invalid options naming the option', async () => {
    const error = await rejection(startCoordinator({ ...base, maxBufferedRecords: 0 }));
    expect(error.code).to.equal('ERR_INVALID_OPTION');
    expect(error.message).to.match(/maxBufferedRecords/);
  });
});

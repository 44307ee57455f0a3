import { PROTOCOL_VERSION } from '@shardline/common';
import { expect } from 'chai';
import {
  isModuleCoordinatorMessage,
  isModuleWorkerMessage,
} from '../../../packages/coordinator/src/module-protocol.js';

describe('coordinator handlerModule protocol guards', () => {
  const v = PROTOCOL_VERSION;
  const error = { name: 'ShardlineError', message: 'x', code: 'ERR_HANDLER', retriable: false };
  const record = {
    data: { a: 1 },
    partitionKey: 'k',
    sequenceNumber: '5',
    approximateArrivalTimestamp: new Date(0),
  };

  it('accepts well-formed worker messages', () => {
    for (const m of [
      { v, type: 'module-batch', batchId: 0, records: 3, bytes: 30 },
      { v, type: 'module-done', batchId: 0, records: 3, bytes: 30, completed: false },
      { v, type: 'module-progress', position: { sequenceNumber: '1', subSequenceNumber: 2 }, delivered: 3 },
      { v, type: 'module-failed', error, position: { sequenceNumber: '7' } },
      { v, type: 'module-failed', error },
      { v, type: 'module-checkpoint', id: 1, position: { sequenceNumber: '1' } },
      { v, type: 'module-dead-letter', id: 2, records: [record], error, attempts: 1 },
      { v, type: 'module-batch-processed', event: { shardId: 's', records: 2, durationMs: 1.5 } },
      { v, type: 'module-handler-failed', error, attempt: 2, action: 'retry', records: 4 },
      {
        v,
        type: 'module-record-expired',
        event: { shardId: 's', records: 2, sequenceNumber: '9', ageMs: 61_000, action: 'skip' },
      },
    ]) {
      expect(isModuleWorkerMessage(m), m.type).to.equal(true);
    }
  });

  it('rejects other versions, types and malformed fields', () => {
    for (const m of [
      null,
      { v: 2, type: 'module-batch', batchId: 0, records: 3, bytes: 30 },
      { v, type: 'batch' },
      { v, type: 'module-batch', batchId: -1, records: 3, bytes: 30 },
      { v, type: 'module-done', batchId: 0, records: 3, bytes: 30 },
      { v, type: 'module-progress', position: { sequenceNumber: 1 }, delivered: 3 },
      { v, type: 'module-failed', error, position: { sequenceNumber: 7 } },
      { v, type: 'module-failed', error: { message: 'no code' }, position: { sequenceNumber: '7' } },
      { v, type: 'module-checkpoint', id: 1, position: { sequenceNumber: '1', subSequenceNumber: 1.5 } },
      {
        v,
        type: 'module-dead-letter',
        id: 2,
        records: [{ ...record, approximateArrivalTimestamp: 0 }],
        error,
        attempts: 1,
      },
      { v, type: 'module-batch-processed', event: { shardId: 's' } },
      { v, type: 'module-handler-failed', error, attempt: 2, action: 'explode', records: 4 },
      { v, type: 'module-event', event: 'batch.processed', payload: {} },
      {
        v,
        type: 'module-record-expired',
        event: { shardId: 's', records: 2, sequenceNumber: '9', ageMs: 61_000, action: 'retry' },
      },
      { v, type: 'module-record-expired', event: { shardId: 's', records: 2, ageMs: 1, action: 'skip' } },
    ]) {
      expect(isModuleWorkerMessage(m), JSON.stringify(m)).to.equal(false);
    }
  });

  it('checks coordinator messages', () => {
    expect(isModuleCoordinatorMessage({ v, type: 'module-deadline', epochMs: 1 })).to.equal(true);
    expect(isModuleCoordinatorMessage({ v, type: 'module-result', id: 3 })).to.equal(true);
    expect(isModuleCoordinatorMessage({ v, type: 'module-result', id: 3, error })).to.equal(true);
    expect(isModuleCoordinatorMessage({ v, type: 'module-result', id: 3, error: { message: 'x' } })).to.equal(
      false,
    );
    expect(isModuleCoordinatorMessage({ v, type: 'module-deadline', epochMs: Number.NaN })).to.equal(false);
    expect(isModuleCoordinatorMessage({ v, type: 'credit', records: 1, bytes: 1 })).to.equal(false);
  });
});

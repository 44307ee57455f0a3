import { expect } from 'chai';
import { DeliveryTally } from '../../../packages/cli/src/demo/tally.js';

describe('cli demo DeliveryTally', () => {
  it('counts records in order per key, interleaved across keys', () => {
    const tally = new DeliveryTally();
    for (const [key, seq] of [
      ['a', 0],
      ['b', 0],
      ['a', 1],
      ['b', 1],
      ['a', 2],
    ] as const) {
      tally.add({ key, seq });
    }
    expect(tally.unique).to.equal(5);
    expect(tally.keys).to.equal(2);
    expect(tally.duplicates).to.equal(0);
    expect(tally.outOfOrder).to.equal(0);
  });

  it('counts a redelivery as a duplicate, not as an order break', () => {
    const tally = new DeliveryTally();
    for (const seq of [0, 1, 2, 1, 2, 3]) tally.add({ key: 'a', seq });
    expect(tally.unique).to.equal(4);
    expect(tally.duplicates).to.equal(2);
    expect(tally.outOfOrder).to.equal(0);
  });

  it('counts a new record arriving after a later one of its key as out of order, with an example', () => {
    const tally = new DeliveryTally();
    for (const seq of [0, 2, 1, 3]) tally.add({ key: 'a', seq });
    expect(tally.unique).to.equal(4);
    expect(tally.outOfOrder).to.equal(1);
    expect(tally.examples).to.deep.equal(['a: seq 1 after 2']);
  });

  it('counts anything that is not a demo record as invalid', () => {
    const tally = new DeliveryTally();
    for (const item of [null, 'x', { key: 'a' }, { key: 1, seq: 0 }, { key: 'a', seq: 1.5 }]) tally.add(item);
    expect(tally.invalid).to.equal(5);
    expect(tally.unique).to.equal(0);
  });
});

import { expect } from 'chai';
import { achievedRate, rateLine, rateText } from '../../../packages/cli/src/demo/report.js';

describe('cli demo report: the rate reached beside the one asked for', () => {
  it('achieved: records per second of production, rounded; 0 without records or time', () => {
    expect(achievedRate(2_000, 6_400)).to.equal(313);
    expect(achievedRate(0, 1_000)).to.equal(0);
    expect(achievedRate(10, 0)).to.equal(0);
    expect(rateText(2_000, 2_000, 1_000)).to.equal('1000/s, asked for 1000/s');
  });

  it('says so, and why, when the run fell short of --rate by more than 10%', () => {
    expect(rateLine({ requested: 500, achieved: 470 })).to.equal('470 records/s (asked for 500/s)');
    expect(rateLine({ requested: 1_000, achieved: 300 })).to.equal(
      "300 records/s (asked for 1000/s): slower, paced by the local Kinesis's answers (one PutRecords call in flight per shard)",
    );
  });
});

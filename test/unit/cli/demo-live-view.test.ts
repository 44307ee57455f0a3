import { Writable } from 'node:stream';
import { expect } from 'chai';
import type { DemoShardView } from '../../../packages/cli/src/demo/hosts.js';
import {
  LiveView,
  MAX_SHARD_ROWS,
  type ProgressSnapshot,
  progressBlock,
  progressLine,
} from '../../../packages/cli/src/demo/live-view.js';

/** A stderr stand-in that keeps what was written; `isTTY` as asked. */
function sink(isTTY: boolean): Writable & { text: () => string; isTTY: boolean } {
  let text = '';
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      text += String(chunk);
      callback();
    },
  });
  return Object.assign(stream, { text: () => text, isTTY });
}

function shard(id: number, overrides: Partial<DemoShardView> = {}): DemoShardView {
  return {
    shardId: `shardId-${String(id).padStart(12, '0')}`,
    state: 'reading',
    owner: 'host-1',
    millisBehindLatest: 1_500,
    recordsDelivered: 10 * id,
    parentShardIds: [],
    ...overrides,
  };
}

function snapshot(overrides: Partial<ProgressSnapshot> = {}): ProgressSnapshot {
  return {
    elapsedMs: 2_500,
    produced: 50,
    requested: 100,
    consumed: 40,
    duplicates: 2,
    shards: [shard(0, { state: 'ended', owner: undefined }), shard(1)],
    ...overrides,
  };
}

describe('cli demo live view', () => {
  it('the terminal block: totals with bars, one row per shard (lag only while reading), the hosts', () => {
    const lines = progressBlock(
      snapshot({
        hosts: [
          { hostId: 'host-1', records: 30, killed: false, reading: 1 },
          { hostId: 'host-2', records: 12, killed: true, reading: 0 },
        ],
      }),
    );
    expect(lines[0]).to.equal(
      'demo 2.5s  produced [##########..........] 50/100  consumed [########............] 40  dup 2',
    );
    expect(lines[1]).to.match(/^ {2}shard +state +owner +lag +records$/);
    expect(lines[2]).to.match(/^ {2}#0 +ended +- +- +0$/);
    expect(lines[3]).to.match(/^ {2}#1 +reading +host-1 +1\.5s +10$/);
    expect(lines[4]).to.equal('  hosts: host-1 1 shard, 30 rec | host-2 KILLED, 12 rec');
    expect(lines).to.have.length(5);
  });

  it('caps the shard rows so the block fits a terminal', () => {
    const shards = Array.from({ length: MAX_SHARD_ROWS + 5 }, (_, i) => shard(i));
    const lines = progressBlock(snapshot({ shards }));
    expect(lines).to.have.length(2 + MAX_SHARD_ROWS + 1);
    expect(lines.at(-1)).to.equal('  ... 5 more shards');
  });

  it('the plain line for a pipe', () => {
    expect(progressLine(snapshot())).to.equal(
      'shardline: demo:   2.5s  produced 50/100  consumed 40  dup 2  leases 1  | #0 ended, #1 reading@host-1 1.5s',
    );
    expect(
      progressLine(snapshot({ hosts: [{ hostId: 'host-1', records: 30, killed: true, reading: 0 }] })),
    ).to.match(/\| host-1 killed$/);
  });

  it('not a terminal: one line per refresh, messages as they come, no escape codes', () => {
    const out = sink(false);
    const view = new LiveView(out);
    expect(view.interactive).to.equal(false);
    view.update(snapshot());
    view.message('demo: splitting');
    view.update(snapshot({ produced: 100 }));
    const lines = out.text().split('\n');
    expect(lines[0]).to.match(/^shardline: demo: +2\.5s {2}produced 50\/100/);
    expect(lines[1]).to.equal('shardline: demo: splitting');
    expect(lines[2]).to.match(/produced 100\/100/);
    expect(out.text()).not.to.include('\x1b');
  });

  it('a terminal: the block is redrawn in place, messages go above it, finish() leaves it', () => {
    const out = sink(true);
    const view = new LiveView(out);
    expect(view.interactive).to.equal(true);
    view.message('demo: before any block');
    view.update(snapshot());
    const block = `${progressBlock(snapshot()).join('\n')}\n`;
    expect(out.text()).to.equal(`shardline: demo: before any block\n${block}`);

    // A message erases the block (cursor up 4 lines, clear), prints, and draws the block again.
    const before = out.text().length;
    view.message('demo: splitting');
    expect(out.text().slice(before)).to.equal(`\x1b[4F\x1b[0Jshardline: demo: splitting\n${block}`);

    const next = snapshot({ produced: 100 });
    const beforeUpdate = out.text().length;
    view.update(next);
    expect(out.text().slice(beforeUpdate)).to.equal(`\x1b[4F\x1b[0J${progressBlock(next).join('\n')}\n`);

    view.finish();
    const beforeEnd = out.text().length;
    view.message('demo: done');
    expect(out.text().slice(beforeEnd)).to.equal('shardline: demo: done\n');
  });
});

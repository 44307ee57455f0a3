import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import {
  type AggregatedRecord,
  Aggregator,
  aggregate,
  deaggregate,
  ErrorCodes,
  isAggregated,
  type KinesisRecordInput,
  KPL_MAGIC,
  KplError,
  ShardlineError,
  ShardlineOptionError,
  type UserRecord,
} from '@shardline/common';
import { expect } from 'chai';
import { seededRandom } from '../../support/random.js';

// aws-kinesis-agg (AWS's reference Node implementation) is CommonJS and its typings import aws-sdk v2 and
// aws-lambda types that are not installed: describe the parts used here.
interface AwsUserRecord {
  partitionKey: string;
  explicitPartitionKey?: string;
  sequenceNumber: string;
  subSequenceNumber?: number;
  data: string; // base64
}
interface AwsEncodedRecord {
  partitionKey: string;
  data: Buffer;
  ExplicitHashKey?: string;
}
interface AwsInputRecord {
  partitionKey: string;
  explicitHashKey?: string;
  data: Buffer;
}
interface ProtoLong {
  low: number;
  high: number;
}
interface AwsProtoMessage {
  partition_key_table: string[];
  explicit_hash_key_table: string[];
  records: Array<{ partition_key_index: ProtoLong; explicit_hash_key_index?: ProtoLong; data: Buffer }>;
}
interface AwsKinesisAgg {
  aggregate(
    records: AwsInputRecord[],
    onEncoded: (encoded: AwsEncodedRecord, done: (error?: Error) => void) => void,
    afterAll: () => void,
    onError: (error: Error) => void,
  ): void;
  deaggregateSync(
    record: { data: Buffer; partitionKey: string; sequenceNumber: string },
    computeChecksums: boolean,
    callback: (error: Error | null | undefined, records?: AwsUserRecord[]) => void,
  ): void;
  RecordAggregator: new () => {
    addUserRecord(record: AwsInputRecord): void;
    build(): AwsEncodedRecord | undefined;
  };
}
interface AwsCommon {
  AggregatedRecord: {
    decode(bytes: Uint8Array): AwsProtoMessage;
    encode(message: object): { finish(): Uint8Array };
  };
}

const require = createRequire(import.meta.url);
const awsAgg = require('aws-kinesis-agg') as AwsKinesisAgg;
// The protobufjs 7 type aws-kinesis-agg itself uses: an independent decoder of our bytes.
const awsProto = (require('aws-kinesis-agg/lib/common.js') as AwsCommon).AggregatedRecord;

const MiB = 1_048_576;
const KEYS = [
  'user-1',
  'user-2',
  'order:42',
  '🦄🎉',
  '中文键',
  'ключ',
  'κλειδί',
  '🦄'.repeat(128),
  '字'.repeat(256),
];

function randomBytes(random: () => number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = Math.floor(random() * 256);
  return out;
}

function randomHashKey(random: () => number): string {
  let value = 0n;
  for (let i = 0; i < 16; i++) value = (value << 8n) | BigInt(Math.floor(random() * 256));
  return value.toString();
}

type EhkMode = 'none' | 'all' | 'mixed';

/**
 * Random records over unicode keys. `integerLikeKeys` adds the explicit hash key '0': aws-kinesis-agg
 * builds its key tables with `Object.keys()` of a plain object, which lists integer-like keys (below
 * 2^32 - 1) first, so its indexes stop matching its tables (see the test about it below). Cross-checks
 * against its aggregation leave such keys out; everything else keeps them.
 */
function makeRecords(count: number, mode: EhkMode, seed: number, integerLikeKeys = true): UserRecord[] {
  const random = seededRandom(seed);
  const ehks = Array.from({ length: 5 }, () => randomHashKey(random));
  ehks.push('340282366920938463463374607431768211455');
  if (integerLikeKeys) ehks.push('0', '42');
  return Array.from({ length: count }, (_, i) => {
    const record: UserRecord = {
      partitionKey: KEYS[Math.floor(random() * KEYS.length)]!,
      data: randomBytes(random, i % 37 === 0 ? 0 : Math.floor(random() * 200)),
    };
    if (mode === 'all' || (mode === 'mixed' && random() < 0.5)) {
      record.explicitHashKey = ehks[Math.floor(random() * ehks.length)]!;
    }
    return record;
  });
}

const toAws = (r: UserRecord): AwsInputRecord => {
  const out: AwsInputRecord = { partitionKey: r.partitionKey, data: Buffer.from(r.data) };
  if (r.explicitHashKey !== undefined) out.explicitHashKey = r.explicitHashKey;
  return out;
};

function awsDeaggregate(data: Uint8Array, sequenceNumber = '1'): AwsUserRecord[] {
  let result: AwsUserRecord[] | undefined;
  awsAgg.deaggregateSync(
    { data: Buffer.from(data), partitionKey: 'outer', sequenceNumber },
    true,
    (error, records) => {
      if (error) throw error;
      result = records;
    },
  );
  if (result === undefined) expect.fail('aws-kinesis-agg did not call back');
  return result;
}

function awsAggregate(records: readonly UserRecord[]): Promise<AwsEncodedRecord[]> {
  return new Promise((resolve, reject) => {
    const out: AwsEncodedRecord[] = [];
    awsAgg.aggregate(
      records.map(toAws),
      (encoded, done) => {
        out.push(encoded);
        done();
      },
      () => resolve(out),
      reject,
    );
  });
}

/** What aws-kinesis-agg builds for exactly this group of records, in this order. */
function awsBuild(records: readonly UserRecord[]): AwsEncodedRecord {
  const aggregator = new awsAgg.RecordAggregator();
  for (const record of records) aggregator.addUserRecord(toAws(record));
  const built = aggregator.build();
  if (built === undefined) expect.fail('aws-kinesis-agg built nothing');
  return built;
}

const utf8Length = (s: string): number => Buffer.byteLength(s, 'utf8');
/** Size as PutRecords counts it. */
const putSize = (a: AggregatedRecord): number => a.data.length + utf8Length(a.partitionKey);
const md5 = (bytes: Uint8Array): Buffer => createHash('md5').update(bytes).digest();

function frame(body: Uint8Array, digest: Uint8Array = md5(body)): Uint8Array {
  return Buffer.concat([KPL_MAGIC, body, digest]);
}

function protoBody(aggregateData: Uint8Array): Uint8Array {
  return aggregateData.subarray(4, aggregateData.length - 16);
}

/** Splits records into the groups our aggregates hold, using their `records` counts. */
function groupsOf(records: readonly UserRecord[], aggregates: readonly AggregatedRecord[]): UserRecord[][] {
  const groups: UserRecord[][] = [];
  let at = 0;
  for (const a of aggregates) {
    groups.push(records.slice(at, at + a.records));
    at += a.records;
  }
  expect(at).to.equal(records.length);
  return groups;
}

function kinesisRecord(
  data: Uint8Array,
  sequenceNumber = '49590338271490256608559692538361571095921575989136588898',
): KinesisRecordInput {
  return {
    data,
    partitionKey: 'outer-key',
    sequenceNumber,
    approximateArrivalTimestamp: new Date(1_700_000_000_000),
  };
}

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(Error);
    return error as Error;
  }
  expect.fail('expected an error, but the call returned');
}

function expectKplError(fn: () => unknown, pattern: RegExp): KplError {
  const error = thrown(fn);
  expect(error, String(error)).to.be.instanceOf(KplError);
  expect((error as KplError).code).to.equal(ErrorCodes.KPL_MALFORMED);
  expect(error.message).to.match(pattern);
  return error as KplError;
}

function expectInvalidRecord(fn: () => unknown, pattern: RegExp): ShardlineError {
  const error = thrown(fn);
  expect(error, String(error)).to.be.instanceOf(ShardlineError);
  expect((error as ShardlineError).code).to.equal(ErrorCodes.INVALID_RECORD);
  expect(error.message).to.match(pattern);
  return error as ShardlineError;
}

describe('KPL aggregation', () => {
  it('KPL_MAGIC is F3 89 9A C2, and changing the exported copy changes nothing', () => {
    expect([...KPL_MAGIC]).to.deep.equal([0xf3, 0x89, 0x9a, 0xc2]);
    const [agg] = aggregate([{ partitionKey: 'k', data: Uint8Array.of(1) }]);
    KPL_MAGIC[0] = 0;
    try {
      expect(agg!.data[0]).to.equal(0xf3);
      expect(isAggregated(agg!.data)).to.equal(true);
    } finally {
      KPL_MAGIC[0] = 0xf3;
    }
  });

  describe('cross-compatibility with aws-kinesis-agg', () => {
    const scenarios: Array<[number, EhkMode]> = [
      [1, 'none'],
      [1, 'all'],
      [2, 'none'],
      [2, 'mixed'],
      [500, 'none'],
      [500, 'all'],
      [500, 'mixed'],
    ];

    for (const [count, mode] of scenarios) {
      it(`ours -> aws-kinesis-agg: ${count} record(s), explicit hash keys: ${mode}`, () => {
        const records = makeRecords(count, mode, count * 31 + mode.length);
        const aggregates = aggregate(records);
        expect(aggregates).to.have.length(1);
        const groups = groupsOf(records, aggregates);
        aggregates.forEach((agg, k) => {
          const group = groups[k]!;
          const decoded = awsDeaggregate(agg.data, `seq-${k}`);
          expect(decoded).to.have.length(group.length);
          // aws-kinesis-agg reads explicit_hash_key_index without checking presence, so a sub-record with no
          // explicit hash key gets explicit_hash_key_table[0] from protobufjs's default value (0). Check the
          // wire itself with its protobufjs 7 decoder instead: the field is there exactly when it should be.
          const wire = awsProto.decode(protoBody(agg.data));
          decoded.forEach((user, i) => {
            const input = group[i]!;
            expect(user.partitionKey).to.equal(input.partitionKey);
            expect(user.data).to.equal(Buffer.from(input.data).toString('base64'));
            expect(user.subSequenceNumber).to.equal(i);
            expect(user.sequenceNumber).to.equal(`seq-${k}`);
            const entry = wire.records[i]!;
            expect(Object.hasOwn(entry, 'explicit_hash_key_index'), `record ${i}`).to.equal(
              input.explicitHashKey !== undefined,
            );
            if (input.explicitHashKey !== undefined)
              expect(user.explicitPartitionKey).to.equal(input.explicitHashKey);
          });
        });
      });

      it(`aws-kinesis-agg -> ours: ${count} record(s), explicit hash keys: ${mode}`, async () => {
        const records = makeRecords(count, mode, count * 17 + mode.length, false);
        const encoded = await awsAggregate(records);
        const out = encoded.flatMap((e, k) => {
          const input = kinesisRecord(e.data, `seq-${k}`);
          const users = deaggregate(input);
          users.forEach((u, i) => {
            expect(u.subSequenceNumber).to.equal(i);
            expect(u.sequenceNumber).to.equal(`seq-${k}`);
            expect(u.approximateArrivalTimestamp).to.equal(input.approximateArrivalTimestamp);
          });
          return users;
        });
        expect(
          out.map((u) => ({
            partitionKey: u.partitionKey,
            explicitHashKey: u.explicitHashKey,
            data: [...u.data],
          })),
        ).to.deep.equal(
          records.map((r) => ({
            partitionKey: r.partitionKey,
            explicitHashKey: r.explicitHashKey,
            data: [...r.data],
          })),
        );
        for (const u of out)
          expect(Object.hasOwn(u, 'explicitHashKey')).to.equal(u.explicitHashKey !== undefined);
      });

      it(`byte-identical to aws-kinesis-agg for the same records in the same order: ${count}, ${mode}`, () => {
        const records = makeRecords(count, mode, count * 7 + mode.length, false);
        const aggregates = aggregate(records);
        groupsOf(records, aggregates).forEach((group, k) => {
          const theirs = awsBuild(group);
          const ours = aggregates[k]!;
          expect(Buffer.compare(Buffer.from(ours.data), theirs.data)).to.equal(0);
          // Same outer keys too: the first record's partition key, and its explicit hash key when it has one.
          expect(ours.partitionKey).to.equal(theirs.partitionKey).and.to.equal(group[0]!.partitionKey);
          expect(ours.explicitHashKey)
            .to.equal(theirs.ExplicitHashKey)
            .and.to.equal(group[0]!.explicitHashKey);
          expect(ours.records).to.equal(group.length);
        });
      });
    }

    it('keeps table indexes right for integer-like keys, which aws-kinesis-agg aggregation mixes up', () => {
      const records: UserRecord[] = [
        { partitionKey: 'x', explicitHashKey: '999999999999', data: Buffer.from('first') },
        { partitionKey: '7', explicitHashKey: '0', data: Buffer.from('second') },
      ];
      const [ours] = aggregate(records);
      // aws-kinesis-agg's deaggregation reads ours correctly.
      const read = awsDeaggregate(ours!.data);
      expect(
        read.map((u) => [u.partitionKey, u.explicitPartitionKey, Buffer.from(u.data, 'base64').toString()]),
      ).to.deep.equal([
        ['x', '999999999999', 'first'],
        ['7', '0', 'second'],
      ]);
      // Its aggregation lists '7' and '0' first in the tables (Object.keys order) while the indexes follow
      // insertion order, so the keys of the two records come back swapped. This is why the byte-for-byte
      // comparisons avoid integer-like keys: the bytes legitimately differ.
      const theirs = deaggregate(kinesisRecord(awsBuild(records).data));
      expect(theirs.map((u) => [u.partitionKey, u.explicitHashKey])).to.deep.equal([
        ['7', '0'],
        ['x', '999999999999'],
      ]);
      expect(
        deaggregate(kinesisRecord(ours!.data)).map((u) => [u.partitionKey, u.explicitHashKey]),
      ).to.deep.equal([
        ['x', '999999999999'],
        ['7', '0'],
      ]);
    });

    it('records near the 1 MiB limit, both ways and byte for byte', async () => {
      const random = seededRandom(99);
      const records: UserRecord[] = [
        { partitionKey: '🦄'.repeat(128), data: randomBytes(random, 700_000) },
        { partitionKey: '中文键', explicitHashKey: '12345', data: randomBytes(random, 700_000) },
        { partitionKey: 'small', data: randomBytes(random, 100) },
        { partitionKey: 'ключ', data: randomBytes(random, 300_000) },
        { partitionKey: 'big', data: randomBytes(random, MiB - 1_000) },
      ];
      const aggregates = aggregate(records);
      expect(aggregates.map((a) => a.records)).to.deep.equal([1, 3, 1]);
      for (const a of aggregates) expect(putSize(a)).to.be.at.most(MiB);
      const groups = groupsOf(records, aggregates);
      aggregates.forEach((agg, k) => {
        const decoded = awsDeaggregate(agg.data);
        expect(decoded.map((d) => Buffer.from(d.data, 'base64'))).to.deep.equal(
          groups[k]!.map((r) => Buffer.from(r.data)),
        );
        expect(Buffer.compare(Buffer.from(agg.data), awsBuild(groups[k]!).data)).to.equal(0);
      });

      const theirs = await awsAggregate(records);
      expect(theirs).to.have.length(3);
      const ours = theirs.flatMap((e) => deaggregate(kinesisRecord(e.data)));
      expect(ours.map((u) => Buffer.from(u.data))).to.deep.equal(records.map((r) => Buffer.from(r.data)));
      expect(ours.map((u) => u.partitionKey)).to.deep.equal(records.map((r) => r.partitionKey));
    });

    it('an aggregate of exactly 1 MiB (data + partition key) is accepted and readable by aws-kinesis-agg', () => {
      // A key whose UTF-8 size (512 bytes) is twice its length: the limit counts bytes.
      const partitionKey = '🦄'.repeat(128);
      const sizeFor = (length: number) =>
        putSize(aggregate([{ partitionKey, data: new Uint8Array(length) }], { maxBytes: 4 * MiB })[0]!);
      // Measured from real encodings, independently of the library's own size arithmetic.
      const length = MiB - (sizeFor(1_000_000) - 1_000_000);
      expect(sizeFor(length)).to.equal(MiB);

      const [exact] = aggregate([{ partitionKey, data: new Uint8Array(length).fill(7) }]);
      expect(putSize(exact!)).to.equal(MiB);
      const decoded = awsDeaggregate(exact!.data);
      expect(Buffer.from(decoded[0]!.data, 'base64').length).to.equal(length);
      expect(deaggregate(kinesisRecord(exact!.data))[0]!.data.length).to.equal(length);

      const error = expectInvalidRecord(
        () =>
          aggregate([
            { partitionKey: 'x', data: Uint8Array.of(1) },
            { partitionKey, data: new Uint8Array(length + 1) },
          ]),
        /^records\[1\] is too large to aggregate: 1048577 bytes/,
      );
      expect(error.details).to.deep.include({ field: 'records[1]', sizeBytes: MiB + 1, maxBytes: MiB });
    });
  });

  describe('aggregate', () => {
    it('deduplicates partition and explicit hash keys in first-seen order', () => {
      const records: UserRecord[] = Array.from({ length: 500 }, (_, i) => {
        const r: UserRecord = { partitionKey: ['b', 'a', '🦄'][i % 3]!, data: Uint8Array.of(i & 255) };
        if (i % 2 === 1) r.explicitHashKey = ['7', '0'][(i >> 1) % 2]!;
        return r;
      });
      const [agg] = aggregate(records);
      const wire = awsProto.decode(protoBody(agg!.data));
      expect(wire.partition_key_table).to.deep.equal(['b', 'a', '🦄']);
      expect(wire.explicit_hash_key_table).to.deep.equal(['7', '0']);
      expect(wire.records).to.have.length(500);
      expect(wire.records[4]!.partition_key_index.low).to.equal(1);
      expect(wire.records[3]!.explicit_hash_key_index!.low).to.equal(1);
    });

    it('keeps size arithmetic exact with more than 127 keys (two-byte indexes) and data around varint steps', () => {
      const records: UserRecord[] = [];
      for (let i = 0; i < 300; i++) {
        const r: UserRecord = {
          partitionKey: `key-${i}`,
          data: new Uint8Array([0, 127, 128, 16_383, 16_384][i % 5]!),
        };
        if (i % 3 === 0) r.explicitHashKey = String(i * 1_000_003);
        records.push(r);
      }
      // The library refuses to emit an aggregate whose encoded size differs from its own arithmetic,
      // so encoding at all proves the arithmetic; the round trip proves the content.
      const aggregates = aggregate(records, { maxBytes: 200_000 });
      expect(aggregates.length).to.be.above(1);
      for (const a of aggregates) expect(putSize(a)).to.be.at.most(200_000);
      const back = aggregates.flatMap((a) => deaggregate(kinesisRecord(a.data)));
      expect(back.map((u) => [u.partitionKey, u.explicitHashKey, u.data.length])).to.deep.equal(
        records.map((r) => [r.partitionKey, r.explicitHashKey, r.data.length]),
      );
    });

    it('two records share an aggregate at exactly maxBytes and split one byte under', () => {
      const records: UserRecord[] = [
        { partitionKey: 'first', data: new Uint8Array(300) },
        { partitionKey: 'second', explicitHashKey: '99', data: new Uint8Array(200) },
      ];
      const [together] = aggregate(records, { maxBytes: MiB });
      const size = putSize(together!);
      expect(aggregate(records, { maxBytes: size })).to.have.length(1);
      const split = aggregate(records, { maxBytes: size - 1 });
      expect(split.map((a) => a.records)).to.deep.equal([1, 1]);
      expect(split[1]!.partitionKey).to.equal('second');
      expect(split[1]!.explicitHashKey).to.equal('99');
    });

    it('returns [] for no records', () => {
      expect(aggregate([])).to.deep.equal([]);
    });

    it('rejects invalid records naming the index, and a bad maxBytes naming the option', () => {
      const ok = { partitionKey: 'k', data: Uint8Array.of(1) };
      const cases: Array<[unknown, RegExp]> = [
        [{ partitionKey: '', data: Uint8Array.of(1) }, /^records\[2\]\.partitionKey must not be empty/],
        [
          { partitionKey: 'x'.repeat(257), data: Uint8Array.of(1) },
          /^records\[2\]\.partitionKey must be at most 256/,
        ],
        [
          { partitionKey: 'k', explicitHashKey: '-5', data: Uint8Array.of(1) },
          /^records\[2\]\.explicitHashKey must be/,
        ],
        [
          {
            partitionKey: 'k',
            explicitHashKey: '340282366920938463463374607431768211456',
            data: Uint8Array.of(1),
          },
          /^records\[2\]\.explicitHashKey must be at most/,
        ],
        [{ partitionKey: 'k', data: 'text' }, /^records\[2\]\.data must be a Uint8Array/],
        [{ partitionKey: 'k' }, /^records\[2\]\.data must be a Uint8Array/],
        [null, /^records\[2\] must be an object/],
      ];
      for (const [bad, pattern] of cases) {
        expectInvalidRecord(() => aggregate([ok, ok, bad as UserRecord]), pattern);
      }
      for (const maxBytes of [0, -1, 2.5, Number.NaN, '100']) {
        const error = thrown(() => aggregate([ok], { maxBytes: maxBytes as number }));
        expect(error).to.be.instanceOf(ShardlineOptionError);
        expect(error.message).to.match(/^maxBytes must be a positive integer/);
      }
      expect(thrown(() => aggregate('nope' as unknown as UserRecord[]))).to.be.instanceOf(
        ShardlineOptionError,
      );
    });
  });

  describe('Aggregator', () => {
    it('splits at the limit, never emits over maxBytes, and tracks sizeBytes exactly', () => {
      const random = seededRandom(4242);
      for (const maxBytes of [120, 400, 2_000, 30_000]) {
        const aggregator = new Aggregator({ maxBytes });
        expect(aggregator.maxBytes).to.equal(maxBytes);
        const sent: AggregatedRecord[] = [];
        const inputs: UserRecord[] = [];
        let group: UserRecord[] = [];
        let refused = 0;
        for (let i = 0; i < 400; i++) {
          const r: UserRecord = {
            partitionKey: random() < 0.5 ? KEYS[Math.floor(random() * 4)]! : `k${Math.floor(random() * 200)}`,
            data: randomBytes(random, Math.floor(random() * Math.min(maxBytes / 2, 3_000))),
          };
          if (random() < 0.3) r.explicitHashKey = randomHashKey(random);
          const before = aggregator.sizeBytes;
          const countBefore = aggregator.count;
          const alone = putSize(aggregate([r], { maxBytes: 10 * MiB })[0]!);
          if (alone > maxBytes) {
            // Too large even alone: refused, and nothing pending changes.
            expectInvalidRecord(() => aggregator.add(r), /^record is too large to aggregate/);
            expect(aggregator.sizeBytes).to.equal(before);
            expect(aggregator.count).to.equal(countBefore);
            refused++;
            continue;
          }
          const out = aggregator.add(r);
          inputs.push(r);
          if (out !== undefined) {
            expect(putSize(out)).to.be.at.most(maxBytes);
            expect(putSize(out)).to.equal(before);
            expect(out.records).to.equal(countBefore);
            expect(out.records).to.equal(group.length);
            // The record that closed it really would not have fitted.
            const grown = aggregate([...group, r], { maxBytes: 10 * MiB });
            expect(putSize(grown[0]!)).to.be.above(maxBytes);
            sent.push(out);
            group = [];
          }
          group.push(r);
          expect(aggregator.count).to.equal(group.length);
          // sizeBytes equals the size of really encoding the pending group.
          expect(aggregator.sizeBytes).to.equal(putSize(aggregate(group, { maxBytes: 10 * MiB })[0]!));
        }
        if (maxBytes === 120) expect(refused).to.be.above(10);
        expect(sent.length).to.be.above(maxBytes === 30_000 ? 10 : 50);
        const last = aggregator.flush();
        expect(last).to.not.equal(undefined);
        expect(putSize(last!)).to.be.at.most(maxBytes);
        sent.push(last!);
        expect(aggregator.count).to.equal(0);
        expect(aggregator.sizeBytes).to.equal(0);
        expect(aggregator.flush()).to.equal(undefined);
        const back = sent.flatMap((a) => deaggregate(kinesisRecord(a.data)));
        expect(
          back.map((u) => [u.partitionKey, u.explicitHashKey, Buffer.from(u.data).toString('hex')]),
        ).to.deep.equal(
          inputs.map((r) => [r.partitionKey, r.explicitHashKey, Buffer.from(r.data).toString('hex')]),
        );
      }
    });

    it('refuses a record too large even alone and keeps the pending aggregate', () => {
      const aggregator = new Aggregator({ maxBytes: 100 });
      expect(aggregator.add({ partitionKey: 'a', data: new Uint8Array(10) })).to.equal(undefined);
      const size = aggregator.sizeBytes;
      const error = expectInvalidRecord(
        () => aggregator.add({ partitionKey: 'b', data: new Uint8Array(200) }),
        /^record is too large to aggregate: .* over maxBytes 100/,
      );
      expect(error.details).to.deep.include({ field: 'record', maxBytes: 100 });
      expectInvalidRecord(
        () => aggregator.add({ partitionKey: '', data: new Uint8Array(1) }),
        /^record\.partitionKey/,
      );
      expect(aggregator.count).to.equal(1);
      expect(aggregator.sizeBytes).to.equal(size);
      const flushed = aggregator.flush()!;
      expect(deaggregate(kinesisRecord(flushed.data)).map((u) => u.partitionKey)).to.deep.equal(['a']);
    });

    it('uses the 1 MiB default and validates maxBytes', () => {
      expect(new Aggregator().maxBytes).to.equal(MiB);
      expect(new Aggregator({}).maxBytes).to.equal(MiB);
      const error = thrown(() => new Aggregator({ maxBytes: 0 }));
      expect(error).to.be.instanceOf(ShardlineOptionError);
      expect(error.message).to.match(/^maxBytes /);
    });
  });

  describe('deaggregate', () => {
    it('passes a plain record through unchanged', () => {
      for (const data of [
        Buffer.from('{"plain":true}'),
        new Uint8Array(0),
        Uint8Array.of(0xf3, 0x89, 0x9a),
      ]) {
        const record = kinesisRecord(data);
        const out = deaggregate(record);
        expect(out).to.have.length(1);
        expect(out[0]).to.equal(record);
        expect(out[0]).to.not.have.property('subSequenceNumber');
        expect(isAggregated(data)).to.equal(false);
      }
    });

    it('treats a record with a wrong magic byte as plain', () => {
      const [agg] = aggregate(makeRecords(3, 'mixed', 5));
      for (let i = 0; i < 4; i++) {
        const data = Uint8Array.from(agg!.data);
        data[i]! ^= 0x01;
        const record = kinesisRecord(data);
        expect(deaggregate(record)).to.deep.equal([record]);
      }
    });

    it('yields sub-records with their keys, sub-sequence numbers and the outer sequence and arrival time', () => {
      const records = makeRecords(20, 'mixed', 11);
      const [agg] = aggregate(records);
      const input = kinesisRecord(agg!.data, '4959');
      const out = deaggregate(input);
      expect(isAggregated(agg!.data)).to.equal(true);
      expect(out).to.have.length(20);
      out.forEach((u, i) => {
        const expected: Record<string, unknown> = {
          data: u.data,
          partitionKey: records[i]!.partitionKey,
          sequenceNumber: '4959',
          subSequenceNumber: i,
          approximateArrivalTimestamp: input.approximateArrivalTimestamp,
        };
        if (records[i]!.explicitHashKey !== undefined) expected.explicitHashKey = records[i]!.explicitHashKey;
        expect(u).to.deep.equal(expected);
        expect([...u.data]).to.deep.equal([...records[i]!.data]);
        // A view into the aggregate's bytes, not a copy.
        expect(u.data.buffer).to.equal(agg!.data.buffer);
      });
      const noTime = deaggregate({ data: agg!.data, partitionKey: 'p', sequenceNumber: '1' });
      expect(noTime[0]).to.not.have.property('approximateArrivalTimestamp');
    });

    it('reads an aggregate inside a larger buffer (non-zero byteOffset)', () => {
      const [agg] = aggregate(makeRecords(5, 'all', 3));
      const host = new Uint8Array(agg!.data.length + 13);
      host.set(agg!.data, 7);
      const out = deaggregate(kinesisRecord(host.subarray(7, 7 + agg!.data.length)));
      expect(out).to.have.length(5);
    });

    it('returns [] for a well-formed aggregate of zero records', () => {
      expect(deaggregate(kinesisRecord(frame(new Uint8Array(0))))).to.deep.equal([]);
    });

    it('rejects the magic with fewer than magic + MD5 bytes', () => {
      expectKplError(
        () => deaggregate(kinesisRecord(Uint8Array.from(KPL_MAGIC))),
        /has 4 bytes, fewer than magic \+ MD5 \(20\)/,
      );
      expectKplError(
        () => deaggregate(kinesisRecord(new Uint8Array([...KPL_MAGIC, ...new Uint8Array(15)]))),
        /has 19 bytes/,
      );
    });

    it('rejects a flipped MD5 byte, a flipped body byte and a truncated aggregate', () => {
      const [agg] = aggregate(makeRecords(10, 'mixed', 8));
      const data = agg!.data;
      for (const position of [data.length - 1, data.length - 16, 4, 20, data.length - 17]) {
        const bad = Uint8Array.from(data);
        bad[position]! ^= 0x40;
        const error = expectKplError(() => deaggregate(kinesisRecord(bad, '77')), /MD5 checksum mismatch/);
        expect(error.message).to.contain('record 77');
      }
      expectKplError(() => deaggregate(kinesisRecord(data.subarray(0, data.length - 1))), /MD5/);
      expectKplError(() => deaggregate(kinesisRecord(data.subarray(0, 40))), /MD5/);
    });

    it('rejects a truncated protobuf body even with a matching MD5', () => {
      const [agg] = aggregate(makeRecords(10, 'mixed', 9));
      const body = protoBody(agg!.data);
      for (const cut of [1, 2, 7, Math.floor(body.length / 2)]) {
        expectKplError(
          () => deaggregate(kinesisRecord(frame(body.subarray(0, body.length - cut)))),
          /protobuf decoding failed/,
        );
      }
    });

    it('rejects out-of-range table indexes and missing required fields', () => {
      const encode = (message: object) => frame(awsProto.encode(message).finish());
      const pk = encode({
        partition_key_table: ['a'],
        explicit_hash_key_table: [],
        records: [
          { partition_key_index: 0, data: Buffer.from('ok') },
          { partition_key_index: 1, data: Buffer.from('bad') },
        ],
      });
      expectKplError(
        () => deaggregate(kinesisRecord(pk)),
        /sub-record 1 has partition_key_index 1 but the table has 1 keys/,
      );
      const huge = encode({
        partition_key_table: ['a'],
        explicit_hash_key_table: [],
        records: [{ partition_key_index: 2 ** 40, data: Buffer.from('x') }],
      });
      expectKplError(() => deaggregate(kinesisRecord(huge)), /partition_key_index 1099511627776/);
      const ehk = encode({
        partition_key_table: ['a'],
        explicit_hash_key_table: ['5'],
        records: [{ partition_key_index: 0, explicit_hash_key_index: 1, data: Buffer.from('x') }],
      });
      expectKplError(
        () => deaggregate(kinesisRecord(ehk)),
        /explicit_hash_key_index 1 but the table has 1 keys/,
      );
      // Hand-made protobuf: a record with only partition_key_index (field 1 = 0), no data.
      const noData = frame(Uint8Array.of(0x0a, 0x01, 0x61, 0x1a, 0x02, 0x08, 0x00));
      expectKplError(() => deaggregate(kinesisRecord(noData)), /missing required 'data'/);
    });

    it('never throws anything but KplError on random bodies with a valid MD5', () => {
      const random = seededRandom(7);
      const [agg] = aggregate(makeRecords(6, 'mixed', 1));
      const body = protoBody(agg!.data);
      let ok = 0;
      let rejected = 0;
      for (let round = 0; round < 2_000; round++) {
        let candidate: Uint8Array;
        if (round % 2 === 0) {
          candidate = randomBytes(random, Math.floor(random() * 64));
        } else {
          candidate = Uint8Array.from(body);
          for (let flips = 1 + Math.floor(random() * 3); flips > 0; flips--) {
            candidate[Math.floor(random() * candidate.length)] = Math.floor(random() * 256);
          }
        }
        try {
          const out = deaggregate(kinesisRecord(frame(candidate)));
          expect(Array.isArray(out)).to.equal(true);
          ok++;
        } catch (error) {
          if (!(error instanceof KplError))
            expect.fail(`threw ${String(error)} for body [${[...candidate].join(',')}]`);
          rejected++;
        }
      }
      expect(ok).to.be.above(50);
      expect(rejected).to.be.above(500);
    });
  });
});

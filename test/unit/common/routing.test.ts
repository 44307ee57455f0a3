import { createHash, randomBytes } from 'node:crypto';
import {
  ErrorCodes,
  MAX_HASH_KEY,
  parseExplicitHashKey,
  partitionKeyToHashKey,
  type ShardHashRange,
  ShardlineError,
  ShardRouter,
  validatePartitionKey,
} from '@shardline/common';
import { expect } from 'chai';

/** The error `fn` throws; fails the test when it returns. */
function thrown(fn: () => unknown): ShardlineError {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(ShardlineError);
    return error as ShardlineError;
  }
  expect.fail('expected an error, but the call returned');
}

/** MD5 -> bigint computed independently of the library. */
function md5Hash(key: string): bigint {
  return BigInt(`0x${createHash('md5').update(Buffer.from(key, 'utf8')).digest('hex')}`);
}

/** `count` shards splitting the hash space evenly, the way CreateStream does. */
function evenShards(count: number): ShardHashRange[] {
  const size = (MAX_HASH_KEY + 1n) / BigInt(count);
  return Array.from({ length: count }, (_, i) => ({
    shardId: `shardId-${String(i).padStart(12, '0')}`,
    startingHashKey: (size * BigInt(i)).toString(),
    endingHashKey: (i === count - 1 ? MAX_HASH_KEY : size * BigInt(i + 1) - 1n).toString(),
  }));
}

function linearFind(shards: readonly ShardHashRange[], hashKey: bigint): string | undefined {
  return shards.find((s) => BigInt(s.startingHashKey) <= hashKey && hashKey <= BigInt(s.endingHashKey))
    ?.shardId;
}

describe('routing', () => {
  describe('partitionKeyToHashKey', () => {
    it('MAX_HASH_KEY is 2^128 - 1', () => {
      expect(MAX_HASH_KEY).to.equal(2n ** 128n - 1n);
      expect(MAX_HASH_KEY.toString()).to.equal('340282366920938463463374607431768211455');
    });

    it('matches known MD5 vectors (computed outside Node)', () => {
      expect(partitionKeyToHashKey('a')).to.equal(16955237001963240173058271559858726497n);
      expect(partitionKeyToHashKey('shardline')).to.equal(321645524726029688194639410557725216638n);
      expect(partitionKeyToHashKey('🦄')).to.equal(74283637109060470999794601600229887219n);
      expect(partitionKeyToHashKey('中文')).to.equal(222950780121674131202544964908810521095n);
    });

    it('equals MD5 of the UTF-8 key as an unsigned big-endian integer, for many keys', () => {
      const keys = ['', 'x', 'user-42', 'ключ', 'κλειδί', '🎉🦄', 'a'.repeat(256), '\u00e9', 'e\u0301'];
      for (let i = 0; i < 500; i++) keys.push(randomBytes(1 + (i % 40)).toString('base64'));
      for (const key of keys) {
        const hashKey = partitionKeyToHashKey(key);
        expect(hashKey, key).to.equal(md5Hash(key));
        expect(hashKey >= 0n && hashKey <= MAX_HASH_KEY).to.equal(true);
      }
    });

    it('covers hashes with the top bit set (unsigned, not two-complement)', () => {
      // Find a key whose MD5 starts with a byte >= 0x80.
      let key = '';
      for (let i = 0; ; i++) {
        key = `k${i}`;
        if (createHash('md5').update(key).digest()[0]! >= 0x80) break;
      }
      expect(partitionKeyToHashKey(key) >= 2n ** 127n).to.equal(true);
      expect(partitionKeyToHashKey(key)).to.equal(md5Hash(key));
    });
  });

  describe('parseExplicitHashKey', () => {
    it('parses 0, 2^128 - 1 and values between', () => {
      expect(parseExplicitHashKey('0')).to.equal(0n);
      expect(parseExplicitHashKey('1')).to.equal(1n);
      expect(parseExplicitHashKey('340282366920938463463374607431768211455')).to.equal(MAX_HASH_KEY);
      expect(parseExplicitHashKey('170141183460469231731687303715884105728')).to.equal(2n ** 127n);
    });

    it('rejects 2^128, signs, spaces, leading zeros, decimals, hex and non-strings, naming the field', () => {
      const bad: unknown[] = [
        '340282366920938463463374607431768211456',
        '1000000000000000000000000000000000000000',
        '',
        '-1',
        '+1',
        ' 1',
        '1 ',
        '01',
        '00',
        '1.0',
        '1e3',
        '0x10',
        'abc',
        '١٢٣', // Arabic-Indic digits: \d in some engines, not decimal for Kinesis
        12,
        12n,
        null,
        undefined,
      ];
      for (const value of bad) {
        const error = thrown(() => parseExplicitHashKey(value as string));
        expect(error.code, String(value)).to.equal(ErrorCodes.INVALID_RECORD);
        expect(error.message).to.match(/^explicitHashKey /);
        expect(error.details).to.deep.include({ field: 'explicitHashKey' });
      }
      const named = thrown(() => parseExplicitHashKey('2'.repeat(40), 'records[7].explicitHashKey'));
      expect(named.message).to.contain('records[7].explicitHashKey');
      expect(named.details).to.deep.include({ field: 'records[7].explicitHashKey' });
    });
  });

  describe('validatePartitionKey', () => {
    it('accepts 1 to 256 characters and returns the key', () => {
      expect(validatePartitionKey('a')).to.equal('a');
      expect(validatePartitionKey('a'.repeat(256))).to.equal('a'.repeat(256));
      // 256 CJK characters: 768 UTF-8 bytes, still 256 characters.
      expect(validatePartitionKey('中'.repeat(256))).to.equal('中'.repeat(256));
      // 128 emoji = 256 UTF-16 code units.
      expect(validatePartitionKey('🦄'.repeat(128))).to.equal('🦄'.repeat(128));
    });

    it('rejects empty, 257 characters, non-strings and lone surrogates, naming the field', () => {
      const cases: Array<[unknown, RegExp]> = [
        ['', /must not be empty/],
        ['a'.repeat(257), /at most 256 .*got 257/],
        ['中'.repeat(257), /at most 256/],
        [42, /must be a string/],
        [undefined, /must be a string/],
        [null, /must be a string/],
        ['ab\uD800cd', /well-formed/],
        ['\uDC00', /well-formed/],
      ];
      for (const [value, pattern] of cases) {
        const error = thrown(() => validatePartitionKey(value));
        expect(error.code).to.equal(ErrorCodes.INVALID_RECORD);
        expect(error.message).to.match(/^partitionKey /);
        expect(error.message).to.match(pattern);
      }
      const named = thrown(() => validatePartitionKey('', 'records[3].partitionKey'));
      expect(named.message).to.match(/^records\[3\]\.partitionKey must not be empty/);
      expect(named.details).to.deep.include({ field: 'records[3].partitionKey' });
    });

    it('counts UTF-16 code units, like the Java KPL: 129 emoji (258 units) are refused', () => {
      const error = thrown(() => validatePartitionKey('🦄'.repeat(129)));
      expect(error.code).to.equal(ErrorCodes.INVALID_RECORD);
      expect(error.message).to.contain('got 258');
    });
  });

  describe('ShardRouter', () => {
    const shards = evenShards(4);

    it('routes every key to the shard whose range holds its MD5 hash', () => {
      const router = new ShardRouter(shards);
      const seen = new Set<string>();
      for (let i = 0; i < 2_000; i++) {
        const key = `key-${i}-${randomBytes(4).toString('hex')}`;
        const expected = linearFind(shards, md5Hash(key));
        expect(router.shardFor(key)).to.equal(expected);
        seen.add(expected!);
      }
      expect(seen.size).to.equal(4);
    });

    it('treats both ends of every range as inclusive', () => {
      const router = new ShardRouter(shards);
      for (const shard of shards) {
        const start = BigInt(shard.startingHashKey);
        const end = BigInt(shard.endingHashKey);
        expect(router.shardForHashKey(start)).to.equal(shard.shardId);
        expect(router.shardForHashKey(end)).to.equal(shard.shardId);
        expect(router.shardFor('any', start.toString())).to.equal(shard.shardId);
        expect(router.shardFor('any', end.toString())).to.equal(shard.shardId);
        if (start > 0n) expect(router.shardForHashKey(start - 1n)).to.not.equal(shard.shardId);
        if (end < MAX_HASH_KEY) expect(router.shardForHashKey(end + 1n)).to.not.equal(shard.shardId);
      }
      expect(router.shardForHashKey(0n)).to.equal(shards[0]!.shardId);
      expect(router.shardForHashKey(MAX_HASH_KEY)).to.equal(shards[3]!.shardId);
    });

    it('lets the explicit hash key win over the partition key', () => {
      const router = new ShardRouter(shards);
      let key = '';
      for (let i = 0; ; i++) {
        key = `k${i}`;
        if (linearFind(shards, md5Hash(key)) === shards[0]!.shardId) break;
      }
      expect(router.shardFor(key)).to.equal(shards[0]!.shardId);
      expect(router.shardFor(key, MAX_HASH_KEY.toString())).to.equal(shards[3]!.shardId);
      expect(router.shardFor(key, shards[2]!.startingHashKey)).to.equal(shards[2]!.shardId);
    });

    it('accepts shards in any order and lists ids in hash-key order', () => {
      const router = new ShardRouter([shards[2]!, shards[0]!, shards[3]!, shards[1]!]);
      expect(router.shardIds).to.deep.equal(shards.map((s) => s.shardId));
      expect(router.shardForHashKey(BigInt(shards[1]!.startingHashKey))).to.equal(shards[1]!.shardId);
      router.shardIds.pop();
      expect(router.shardIds).to.have.length(4);
    });

    it('works with one shard and with uneven ranges', () => {
      expect(new ShardRouter(evenShards(1)).shardFor('x')).to.equal('shardId-000000000000');
      const uneven: ShardHashRange[] = [
        { shardId: 'a', startingHashKey: '0', endingHashKey: '0' },
        { shardId: 'b', startingHashKey: '1', endingHashKey: '1' },
        { shardId: 'c', startingHashKey: '2', endingHashKey: MAX_HASH_KEY.toString() },
      ];
      const router = new ShardRouter(uneven);
      expect(router.shardForHashKey(0n)).to.equal('a');
      expect(router.shardForHashKey(1n)).to.equal('b');
      expect(router.shardForHashKey(2n)).to.equal('c');
      for (let i = 0; i < 200; i++) {
        const key = `u${i}`;
        expect(router.shardFor(key)).to.equal(linearFind(uneven, md5Hash(key)));
      }
    });

    it('throws a retriable ERR_NOT_FOUND for a hash key in a gap (mid-resharding)', () => {
      const router = new ShardRouter([
        { shardId: 'low', startingHashKey: '10', endingHashKey: '99' },
        { shardId: 'high', startingHashKey: '200', endingHashKey: MAX_HASH_KEY.toString() },
      ]);
      for (const hashKey of ['0', '9', '100', '150', '199']) {
        const error = thrown(() => router.shardFor('k', hashKey));
        expect(error.code).to.equal(ErrorCodes.NOT_FOUND);
        expect(error.retriable).to.equal(true);
        expect(error.message).to.contain(`no shard holds hash key ${hashKey}`);
      }
      expect(router.shardFor('k', '10')).to.equal('low');
      expect(router.shardFor('k', '99')).to.equal('low');
      expect(router.shardFor('k', '200')).to.equal('high');
    });

    it('rejects overlapping ranges, e.g. a closed parent passed with its children', () => {
      const [parent] = evenShards(1);
      const children = evenShards(2).map((s, i) => ({ ...s, shardId: `child-${i}` }));
      const error = thrown(() => new ShardRouter([parent!, ...children]));
      expect(error.code).to.equal(ErrorCodes.INVALID_OPTION);
      expect(error.message).to.match(/^shards must not overlap/);
      const touching = thrown(
        () =>
          new ShardRouter([
            { shardId: 'a', startingHashKey: '0', endingHashKey: '10' },
            { shardId: 'b', startingHashKey: '10', endingHashKey: '20' },
          ]),
      );
      expect(touching.message).to.contain('a [0..10] and b [10..20]');
    });

    it('rejects malformed shard lists with the offending field named', () => {
      const max = MAX_HASH_KEY.toString();
      const cases: Array<[unknown, RegExp]> = [
        [[], /^shards must be a non-empty array/],
        [undefined, /^shards must be a non-empty array/],
        [[null], /^shards\[0\] must be an object/],
        [[{ shardId: '', startingHashKey: '0', endingHashKey: max }], /^shards\[0\]\.shardId/],
        [[{ shardId: 'a', startingHashKey: '-1', endingHashKey: max }], /^shards\[0\]\.startingHashKey/],
        [
          [{ shardId: 'a', startingHashKey: '0', endingHashKey: (MAX_HASH_KEY + 1n).toString() }],
          /endingHashKey/,
        ],
        [[{ shardId: 'a', startingHashKey: '0', endingHashKey: 12 }], /^shards\[0\]\.endingHashKey/],
        [
          [{ shardId: 'a', startingHashKey: '5', endingHashKey: '4' }],
          /^shards\[0\] has startingHashKey 5 > endingHashKey 4/,
        ],
        [
          [
            { shardId: 'a', startingHashKey: '0', endingHashKey: '4' },
            { shardId: 'a', startingHashKey: '5', endingHashKey: max },
          ],
          /^shards\[1\]\.shardId repeats shard 'a'/,
        ],
      ];
      for (const [input, pattern] of cases) {
        const error = thrown(() => new ShardRouter(input as ShardHashRange[]));
        expect(error.code).to.equal(ErrorCodes.INVALID_OPTION);
        expect(error.message).to.match(pattern);
      }
    });

    it('validates the record keys it routes', () => {
      const router = new ShardRouter(shards);
      expect(thrown(() => router.shardFor('')).code).to.equal(ErrorCodes.INVALID_RECORD);
      expect(thrown(() => router.shardFor('a'.repeat(257))).message).to.match(/^partitionKey /);
      const ehk = thrown(() => router.shardFor('k', '4'.repeat(39)));
      expect(ehk.code).to.equal(ErrorCodes.INVALID_RECORD);
      expect(ehk.message).to.match(/^explicitHashKey /);
      expect(thrown(() => router.shardFor('k', 'x1')).message).to.match(/^explicitHashKey /);
      expect(thrown(() => router.shardForHashKey(-1n)).code).to.equal(ErrorCodes.INVALID_RECORD);
      expect(thrown(() => router.shardForHashKey(MAX_HASH_KEY + 1n)).code).to.equal(
        ErrorCodes.INVALID_RECORD,
      );
    });
  });
});

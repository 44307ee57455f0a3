// A consumer-bound Kinesis for the benchmarks: a child process (`node memory-kinesis.mjs`) that holds
// pre-filled shards in memory and answers the read API at once, so the consumer, not the emulator,
// bounds throughput. Configured by the MEMORY_KINESIS env variable:
//   { shards, recordsPerShard, recordBytes }   records are JSON {"i":n,"pad":"x..."} of about recordBytes
// Prints {"port":N} on its first stdout line once it listens on 127.0.0.1.
//
// ListShards, DescribeStreamSummary, GetShardIterator (TRIM_HORIZON, LATEST, AT_TIMESTAMP (as
// TRIM_HORIZON), AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER) and GetRecords (Limit, NextShardIterator,
// MillisBehindLatest: 60000 until a shard is read to its end, then 0) behave as Kinesis does for open
// shards; sequence numbers are 21-digit, increasing per shard. Each record's wire form is built once at
// start, so an answer is one string join.
import http from 'node:http';

const { shards: shardCount, recordsPerShard, recordBytes } = JSON.parse(process.env.MEMORY_KINESIS ?? '{}');
const step = (1n << 128n) / BigInt(shardCount);
const shards = Array.from({ length: shardCount }, (_, n) => ({
  ShardId: `shardId-${String(n).padStart(12, '0')}`,
  HashKeyRange: {
    StartingHashKey: String(step * BigInt(n)),
    EndingHashKey: String(n === shardCount - 1 ? (1n << 128n) - 1n : step * BigInt(n + 1) - 1n),
  },
  SequenceNumberRange: { StartingSequenceNumber: sequenceOf(n, 0) },
}));

/** Position `pos` of shard `n` as a sequence number (shard in the high digits, so all are distinct). */
function sequenceOf(n, pos) {
  return `${n + 1}${String(pos).padStart(20, '0')}`;
}

function positionOf(sequenceNumber) {
  return Number(sequenceNumber.slice(-20));
}

const arrival = Date.now() / 1000;
const fragments = shards.map((_, n) => {
  const out = new Array(recordsPerShard);
  for (let i = 0; i < recordsPerShard; i++) {
    const json = JSON.stringify({ i, pad: '' });
    const pad = 'x'.repeat(Math.max(0, recordBytes - json.length));
    const data = Buffer.from(JSON.stringify({ i, pad })).toString('base64');
    out[i] =
      `{"ApproximateArrivalTimestamp":${arrival},"Data":"${data}","PartitionKey":"k-${i % 97}","SequenceNumber":"${sequenceOf(n, i)}"}`;
  }
  return out;
});

const iterator = (shard, pos) => Buffer.from(`${shard}:${pos}`).toString('base64');

function error(res, status, type, message) {
  res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
  res.end(JSON.stringify({ __type: type, message }));
}

http
  .createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    const target = String(req.headers['x-amz-target'] ?? '').split('.')[1];
    let input = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      input += chunk;
    });
    req.on('end', () => {
      const request = input === '' ? {} : JSON.parse(input);
      let body;
      if (target === 'GetRecords') {
        const [shardText, posText] = Buffer.from(String(request.ShardIterator), 'base64')
          .toString()
          .split(':');
        const shard = Number(shardText);
        const from = Number(posText);
        if (!(shard >= 0 && shard < shardCount) || !(from >= 0)) {
          error(res, 400, 'InvalidArgumentException', 'bad shard iterator');
          return;
        }
        const to = Math.min(recordsPerShard, from + Math.min(10_000, request.Limit ?? 10_000));
        const behind = to < recordsPerShard ? 60_000 : 0;
        body = `{"MillisBehindLatest":${behind},"NextShardIterator":"${iterator(shard, to)}","Records":[${fragments[shard].slice(from, to).join(',')}]}`;
      } else if (target === 'GetShardIterator') {
        const shard = shards.findIndex((s) => s.ShardId === request.ShardId);
        if (shard === -1) {
          error(res, 400, 'ResourceNotFoundException', `shard ${request.ShardId} not found`);
          return;
        }
        const type = request.ShardIteratorType;
        let pos = 0;
        if (type === 'LATEST') pos = recordsPerShard;
        else if (type === 'AT_SEQUENCE_NUMBER') pos = positionOf(request.StartingSequenceNumber);
        else if (type === 'AFTER_SEQUENCE_NUMBER') pos = positionOf(request.StartingSequenceNumber) + 1;
        body = JSON.stringify({ ShardIterator: iterator(shard, pos) });
      } else if (target === 'ListShards') {
        body = JSON.stringify({ Shards: shards });
      } else if (target === 'DescribeStreamSummary') {
        body = JSON.stringify({
          StreamDescriptionSummary: {
            StreamName: 'memory',
            StreamARN: 'arn:aws:kinesis:us-east-1:000000000000:stream/memory',
            StreamStatus: 'ACTIVE',
            OpenShardCount: shardCount,
            RetentionPeriodHours: 24,
            StreamCreationTimestamp: arrival,
            EnhancedMonitoring: [],
            EncryptionType: 'NONE',
            ConsumerCount: 0,
          },
        });
      } else {
        error(res, 400, 'InvalidArgumentException', `memory kinesis: ${target} is not served`);
        return;
      }
      res.writeHead(200, {
        'content-type': 'application/x-amz-json-1.1',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    });
  })
  .listen(0, '127.0.0.1', function listening() {
    process.stdout.write(`${JSON.stringify({ port: this.address().port })}\n`);
  });

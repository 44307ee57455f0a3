/**
 * The protobuf schema of the KPL aggregated record, defined in code (no .proto file to find at runtime,
 * so bundling works) and compiled on first use: protobufjs is loaded then too, not at import, so a
 * worker thread that never meets an aggregate does not pay its load and code generation (about a
 * tenth of a second of each thread's start).
 *
 * ```proto
 * syntax = "proto2";
 * message AggregatedRecord {
 *   repeated string partition_key_table     = 1;
 *   repeated string explicit_hash_key_table = 2;
 *   repeated Record records                 = 3;
 * }
 * message Tag    { required string key = 1; optional string value = 2; }
 * message Record {
 *   required uint64 partition_key_index     = 1;
 *   optional uint64 explicit_hash_key_index = 2;
 *   required bytes  data                    = 3;
 *   repeated Tag    tags                    = 4;
 * }
 * ```
 * @internal
 */
import { createRequire } from 'node:module';
import type protobuf from 'protobufjs/light.js';

// `edition: 'proto2'` matters: protobufjs 8 reads a JSON descriptor without it as proto3, where an optional
// uint64 has no presence, so an explicit_hash_key_index of 0 would be dropped on encode and on decode.
const descriptor = {
  nested: {
    Tag: {
      edition: 'proto2',
      fields: {
        key: { rule: 'required', type: 'string', id: 1 },
        value: { rule: 'optional', type: 'string', id: 2 },
      },
    },
    Record: {
      edition: 'proto2',
      fields: {
        partition_key_index: { rule: 'required', type: 'uint64', id: 1 },
        explicit_hash_key_index: { rule: 'optional', type: 'uint64', id: 2 },
        data: { rule: 'required', type: 'bytes', id: 3 },
        tags: { rule: 'repeated', type: 'Tag', id: 4 },
      },
    },
    AggregatedRecord: {
      edition: 'proto2',
      fields: {
        partition_key_table: { rule: 'repeated', type: 'string', id: 1 },
        explicit_hash_key_table: { rule: 'repeated', type: 'string', id: 2 },
        records: { rule: 'repeated', type: 'Record', id: 3 },
      },
    },
  },
};

/** A uint64 as protobufjs decodes it: a Long-like object when the `long` package is present, else a number. */
export type ProtoUint64 = number | { low: number; high: number; unsigned?: boolean };

export interface ProtoRecord {
  partition_key_index: ProtoUint64;
  /** Own property only when present on the wire: test with `Object.hasOwn`, not `!== undefined`. */
  explicit_hash_key_index?: ProtoUint64;
  data: Uint8Array;
}

export interface ProtoAggregatedRecord {
  partition_key_table: string[];
  explicit_hash_key_table: string[];
  records: ProtoRecord[];
}

let compiled: protobuf.Type | undefined;

/** The compiled AggregatedRecord type (protobufjs loaded and the type compiled on the first call). */
export function aggregatedRecordType(): protobuf.Type {
  if (compiled !== undefined) return compiled;
  const lib = createRequire(import.meta.url)('protobufjs/light.js') as typeof protobuf;
  const root = lib.Root.fromJSON(descriptor);
  // setup() generates the encoders/decoders of every type now rather than on the first record.
  root.lookupType('Tag').setup();
  root.lookupType('Record').setup();
  compiled = root.lookupType('AggregatedRecord').setup();
  return compiled;
}

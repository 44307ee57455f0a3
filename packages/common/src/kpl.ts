/**
 * KPL record aggregation: many user records in one Kinesis record, in the format of the Kinesis Producer
 * Library (readable by the KCL, aws-kinesis-agg, Lambda deaggregators...):
 *
 * ```text
 * F3 89 9A C2 | protobuf AggregatedRecord | MD5(protobuf bytes), 16 bytes
 * ```
 *
 * See https://github.com/awslabs/amazon-kinesis-producer/blob/master/aggregation-format.md
 *
 * This file holds the format's constants; writing aggregates is in `kpl-aggregate.ts`, reading them in
 * `kpl-deaggregate.ts`, the protobuf schema in `kpl-proto.ts`.
 */

// Shared by kpl-aggregate.ts and kpl-deaggregate.ts; of these the package exports only KPL_MAGIC.
export const MAGIC_0 = 0xf3;
export const MAGIC_1 = 0x89;
export const MAGIC_2 = 0x9a;
export const MAGIC_3 = 0xc2;
export const MAGIC_BYTES = 4;
export const MD5_BYTES = 16;
export const FIXED_OVERHEAD = MAGIC_BYTES + MD5_BYTES;

/** The 4 bytes that open every KPL aggregate. A copy: changing it changes nothing here. */
export const KPL_MAGIC: Uint8Array = Uint8Array.of(MAGIC_0, MAGIC_1, MAGIC_2, MAGIC_3);

/** Whether `data` starts with the KPL magic bytes (it may still be a malformed aggregate). */
export function isAggregated(data: Uint8Array): boolean {
  return (
    data.length >= MAGIC_BYTES &&
    data[0] === MAGIC_0 &&
    data[1] === MAGIC_1 &&
    data[2] === MAGIC_2 &&
    data[3] === MAGIC_3
  );
}

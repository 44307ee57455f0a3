/**
 * The lease Lua scripts (one file each under `lua/`, named `<name>-<numKeys>.lua`) and a typed facade
 * over them. Every lease transition is one script, so it is atomic on the server and checks the owner
 * and counter before it writes.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, ShardlineError } from '@shardline/common';
import type { Cluster, Redis } from 'ioredis';

/**
 * tsc does not copy .lua files to dist/, and the package publishes src/ too. This path resolves to
 * packages/coordinator/src/leases/lua/ both from src/leases/ (tsx, tests) and from dist/leases/ (the
 * built package): both directories sit two levels under the package root.
 */
const LUA_DIR = new URL('../../src/leases/lua/', import.meta.url);

/**
 * Script name -> file. Commands are registered as `shardline<Name>V<version>`: bump the version when a
 * script's contract changes, so two library versions sharing one ioredis instance never run each
 * other's script under the same name.
 */
const SCRIPT_FILES = {
  acquire: 'acquire-2.lua',
  checkpoint: 'checkpoint-2.lua',
  ensureLeases: 'ensure-leases-1.lua',
  getLease: 'get-lease-1.lua',
  heartbeat: 'heartbeat-2.lua',
  leave: 'leave-2.lua',
  listLeases: 'list-leases-1.lua',
  liveHosts: 'live-hosts-2.lua',
  release: 'release-2.lua',
  removeLease: 'remove-lease-1.lua',
  renewLeases: 'renew-leases-1.lua',
  requestHandoff: 'request-handoff-2.lua',
  time: 'time-1.lua',
} as const;

const SCRIPT_VERSION = 4;

/** Prepended to every script: the shared helpers (server clock, effects replication). */
const PRELUDE_FILE = 'prelude.lua';

export type ScriptName = keyof typeof SCRIPT_FILES;

export interface LeaseScript {
  name: ScriptName;
  /** The ioredis command name, e.g. `shardlineAcquireV1`. */
  command: string;
  file: string;
  numberOfKeys: number;
  /** The script file's text. */
  source: string;
  /** What runs: the prelude, then the source. */
  lua: string;
}

let loaded: ReadonlyMap<ScriptName, LeaseScript> | undefined;

/** Reads every script once per process. Throws ERR_INTERNAL naming the file when one is missing. */
export function loadLeaseScripts(): ReadonlyMap<ScriptName, LeaseScript> {
  if (loaded !== undefined) return loaded;
  const scripts = new Map<ScriptName, LeaseScript>();
  const prelude = readScript(PRELUDE_FILE);
  for (const [name, file] of Object.entries(SCRIPT_FILES) as [ScriptName, string][]) {
    const source = readScript(file);
    const lua = `${prelude}\n${source}`;
    const numberOfKeys = Number(/-(\d+)\.lua$/.exec(file)?.[1]);
    const command = `shardline${name[0]!.toUpperCase()}${name.slice(1)}V${SCRIPT_VERSION}`;
    scripts.set(name, { name, command, file, numberOfKeys, source, lua });
  }
  loaded = scripts;
  return scripts;
}

function readScript(file: string): string {
  const url = new URL(file, LUA_DIR);
  try {
    return readFileSync(url, 'utf8');
  } catch (error) {
    throw new ShardlineError(
      ErrorCodes.INTERNAL,
      `lease script ${file} not found at ${fileURLToPath(url)}: the @shardline/coordinator package is ` +
        'incomplete (its src/leases/lua/ directory must be installed next to dist/)',
      { cause: error },
    );
  }
}

/** A lease hash as HGETALL returns it: field, value, field, value... */
export type RawLease = string[];

/** The fields renew-leases returns the values of, in its order (see renew-leases-1.lua). */
export const RENEWED_FIELDS = Object.freeze([
  'owner',
  'counter',
  'expiresAtMs',
  'checkpoint',
  'subSequenceNumber',
  'parents',
  'children',
  'handoffTo',
  'handoffAtMs',
  'failure',
] as const);

export type AcquireStatus = 'OK' | 'NOT_FOUND' | 'HELD' | 'RESERVED';
export type FencedStatus = 'OK' | 'NOT_FOUND' | 'NOT_OWNER' | 'STALE_COUNTER';
export type RenewStatus = FencedStatus | 'EXPIRED';
export type CheckpointStatus = FencedStatus | 'ENDED';
export type HandoffStatus = 'OK' | 'NOT_FOUND' | 'FREE' | 'SELF' | 'ASKED';
export type RemoveStatus = 'OK' | 'NOT_FOUND' | 'HELD' | 'STALE_COUNTER';

/** One lease of a renew-leases reply. */
export interface RenewedLease {
  shardId: string;
  status: RenewStatus;
  lease: RawLease;
}

/** A list-leases reply: `leases` undefined when the caller's cached listing is still good. */
export interface ListReply {
  nowMs: number;
  /** The group version the listing is at; '' when there is none yet (not to be cached). */
  version: string;
  leases: [string, RawLease][] | undefined;
}

export interface TransitionReply<S extends string> {
  status: S;
  nowMs: number;
  lease: RawLease;
}

export interface RawHost {
  hostId: string;
  lastSeenAtMs: number;
  shards: number;
}

/** Typed calls of the lease scripts. Keys are full Redis keys (see `leaseKeys()` in redis.ts). */
export interface LeaseScripts {
  acquire(
    leaseKey: string,
    versionKey: string,
    hostId: string,
    leaseDurationMs: number,
  ): Promise<TransitionReply<AcquireStatus>>;
  /** `held` are pairs: shardId, counter. Replies in the same order. */
  renewLeases(
    indexKey: string,
    hostId: string,
    leaseDurationMs: number,
    held: Array<string | number>,
  ): Promise<{ nowMs: number; leases: RenewedLease[] }>;
  removeLease(
    indexKey: string,
    shardId: string,
    counter: number,
  ): Promise<{ status: RemoveStatus; nowMs: number }>;
  release(
    leaseKey: string,
    versionKey: string,
    hostId: string,
    counter: number,
    failure: string,
  ): Promise<TransitionReply<FencedStatus>>;
  checkpoint(
    leaseKey: string,
    versionKey: string,
    hostId: string,
    counter: number,
    position: string,
    subSequenceNumber: string,
  ): Promise<TransitionReply<CheckpointStatus>>;
  requestHandoff(
    leaseKey: string,
    versionKey: string,
    toHostId: string,
    leaseDurationMs: number,
  ): Promise<TransitionReply<HandoffStatus>>;
  /** `seeds` are triples: shardId, parents JSON, children JSON. */
  ensureLeases(indexKey: string, seeds: string[]): Promise<{ created: number; updated: number }>;
  getLease(leaseKey: string): Promise<{ nowMs: number; lease: RawLease }>;
  /**
   * Every lease, or (`leases` undefined) word that the caller's listing at `version` is still good:
   * the version unchanged and the server clock before `dueMs` (undefined: no due time).
   */
  listLeases(indexKey: string, version: string, dueMs: number | undefined): Promise<ListReply>;
  heartbeat(
    hostsKey: string,
    hostShardsKey: string,
    hostId: string,
    shards: number,
    leaseDurationMs: number,
  ): Promise<{ nowMs: number; pruned: number }>;
  liveHosts(
    hostsKey: string,
    hostShardsKey: string,
    leaseDurationMs: number,
  ): Promise<{ nowMs: number; hosts: RawHost[] }>;
  leave(hostsKey: string, hostShardsKey: string, hostId: string): Promise<boolean>;
  time(anyKey: string): Promise<number>;
}

type ScriptCommand = (...args: (string | number)[]) => Promise<unknown>;

const STATUSES: Record<string, ReadonlySet<string>> = {
  acquire: new Set(['OK', 'NOT_FOUND', 'HELD', 'RESERVED']),
  release: new Set(['OK', 'NOT_FOUND', 'NOT_OWNER', 'STALE_COUNTER']),
  checkpoint: new Set(['OK', 'NOT_FOUND', 'NOT_OWNER', 'STALE_COUNTER', 'ENDED']),
  requestHandoff: new Set(['OK', 'NOT_FOUND', 'FREE', 'SELF', 'ASKED']),
};

const RENEW_STATUSES: ReadonlySet<string> = new Set([
  'OK',
  'NOT_FOUND',
  'NOT_OWNER',
  'STALE_COUNTER',
  'EXPIRED',
]);
const REMOVE_STATUSES: ReadonlySet<string> = new Set(['OK', 'NOT_FOUND', 'HELD', 'STALE_COUNTER']);

function malformed(script: string, reply: unknown): ShardlineError {
  let text: string;
  try {
    text = JSON.stringify(reply)?.slice(0, 200) ?? String(reply);
  } catch {
    text = String(reply);
  }
  return new ShardlineError(ErrorCodes.REDIS, `unexpected reply from the ${script} lease script: ${text}`, {
    retriable: false,
  });
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}

function toInteger(script: string, value: unknown, reply: unknown): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw malformed(script, reply);
  return n;
}

function transition<S extends string>(script: ScriptName, reply: unknown): TransitionReply<S> {
  if (!Array.isArray(reply) || reply.length !== 3) throw malformed(script, reply);
  const [status, nowMs, lease] = reply as unknown[];
  if (typeof status !== 'string' || !STATUSES[script]?.has(status) || !isStringArray(lease)) {
    throw malformed(script, reply);
  }
  return { status: status as S, nowMs: toInteger(script, nowMs, reply), lease };
}

/**
 * Registers the scripts on `redis` with `defineCommand` (idempotent: same names, same bodies) and
 * returns the typed facade. Replies are checked at runtime: anything unexpected is ERR_REDIS.
 */
export function defineLeaseScripts(redis: Redis | Cluster): LeaseScripts {
  const scripts = loadLeaseScripts();
  const commands = new Map<ScriptName, ScriptCommand>();
  for (const script of scripts.values()) {
    redis.defineCommand(script.command, { lua: script.lua, numberOfKeys: script.numberOfKeys });
    const fn = (redis as unknown as Record<string, ScriptCommand>)[script.command];
    if (typeof fn !== 'function') throw malformed(`${script.name} (defineCommand)`, script.command);
    commands.set(script.name, fn.bind(redis));
  }
  const call = (name: ScriptName, ...args: (string | number)[]): Promise<unknown> =>
    commands.get(name)!(...args);

  return {
    acquire: async (leaseKey, versionKey, hostId, leaseDurationMs) =>
      transition('acquire', await call('acquire', leaseKey, versionKey, hostId, leaseDurationMs)),
    async renewLeases(indexKey, hostId, leaseDurationMs, held) {
      const reply = await call('renewLeases', indexKey, hostId, leaseDurationMs, ...held);
      if (!Array.isArray(reply) || reply.length !== 1 + held.length / 2)
        throw malformed('renewLeases', reply);
      const leases: RenewedLease[] = [];
      for (const entry of reply.slice(1) as unknown[]) {
        if (
          !Array.isArray(entry) ||
          typeof entry[0] !== 'string' ||
          typeof entry[1] !== 'string' ||
          !RENEW_STATUSES.has(entry[1]) ||
          !Array.isArray(entry[2]) ||
          entry[2].length !== (entry[1] === 'OK' ? RENEWED_FIELDS.length : 0)
        ) {
          throw malformed('renewLeases', reply);
        }
        // Values in RENEWED_FIELDS order (null where unset), as the HGETALL pairs the decoder reads.
        const lease: RawLease = [];
        for (const [i, value] of (entry[2] as unknown[]).entries()) {
          if (value === null) continue;
          if (typeof value !== 'string') throw malformed('renewLeases', reply);
          lease.push(RENEWED_FIELDS[i]!, value);
        }
        leases.push({ shardId: entry[0], status: entry[1] as RenewStatus, lease });
      }
      return { nowMs: toInteger('renewLeases', reply[0], reply), leases };
    },
    async removeLease(indexKey, shardId, counter) {
      const reply = await call('removeLease', indexKey, shardId, counter);
      if (!Array.isArray(reply) || reply.length !== 2 || !REMOVE_STATUSES.has(String(reply[0]))) {
        throw malformed('removeLease', reply);
      }
      return { status: reply[0] as RemoveStatus, nowMs: toInteger('removeLease', reply[1], reply) };
    },
    release: async (leaseKey, versionKey, hostId, counter, failure) =>
      transition('release', await call('release', leaseKey, versionKey, hostId, counter, failure)),
    checkpoint: async (leaseKey, versionKey, hostId, counter, position, subSequenceNumber) =>
      transition(
        'checkpoint',
        await call('checkpoint', leaseKey, versionKey, hostId, counter, position, subSequenceNumber),
      ),
    requestHandoff: async (leaseKey, versionKey, toHostId, leaseDurationMs) =>
      transition(
        'requestHandoff',
        await call('requestHandoff', leaseKey, versionKey, toHostId, leaseDurationMs),
      ),
    async ensureLeases(indexKey, seeds) {
      const reply = await call('ensureLeases', indexKey, ...seeds);
      if (!Array.isArray(reply) || reply.length !== 2) throw malformed('ensureLeases', reply);
      return {
        created: toInteger('ensureLeases', reply[0], reply),
        updated: toInteger('ensureLeases', reply[1], reply),
      };
    },
    async getLease(leaseKey) {
      const reply = await call('getLease', leaseKey);
      if (!Array.isArray(reply) || reply.length !== 2 || !isStringArray(reply[1])) {
        throw malformed('getLease', reply);
      }
      return { nowMs: toInteger('getLease', reply[0], reply), lease: reply[1] };
    },
    async listLeases(indexKey, version, dueMs) {
      const reply = await call('listLeases', indexKey, version, dueMs === undefined ? '' : dueMs);
      if (
        !Array.isArray(reply) ||
        reply.length < 3 ||
        typeof reply[1] !== 'string' ||
        (reply[2] !== 'SAME' && reply[2] !== 'ALL') ||
        (reply[2] === 'SAME' && reply.length !== 3)
      ) {
        throw malformed('listLeases', reply);
      }
      const nowMs = toInteger('listLeases', reply[0], reply);
      if (reply[2] === 'SAME') return { nowMs, version: reply[1], leases: undefined };
      const leases: [string, RawLease][] = [];
      for (const entry of reply.slice(3) as unknown[]) {
        if (!Array.isArray(entry) || typeof entry[0] !== 'string' || !isStringArray(entry[1])) {
          throw malformed('listLeases', reply);
        }
        leases.push([entry[0], entry[1]]);
      }
      return { nowMs, version: reply[1], leases };
    },
    async heartbeat(hostsKey, hostShardsKey, hostId, shards, leaseDurationMs) {
      const reply = await call('heartbeat', hostsKey, hostShardsKey, hostId, shards, leaseDurationMs);
      if (!Array.isArray(reply) || reply.length !== 2) throw malformed('heartbeat', reply);
      return {
        nowMs: toInteger('heartbeat', reply[0], reply),
        pruned: toInteger('heartbeat', reply[1], reply),
      };
    },
    async liveHosts(hostsKey, hostShardsKey, leaseDurationMs) {
      const reply = await call('liveHosts', hostsKey, hostShardsKey, leaseDurationMs);
      if (!Array.isArray(reply) || reply.length === 0) throw malformed('liveHosts', reply);
      const hosts: RawHost[] = [];
      for (const entry of reply.slice(1) as unknown[]) {
        if (!Array.isArray(entry) || entry.length !== 3 || typeof entry[0] !== 'string') {
          throw malformed('liveHosts', reply);
        }
        hosts.push({
          hostId: entry[0],
          lastSeenAtMs: toInteger('liveHosts', entry[1], reply),
          shards: toInteger('liveHosts', entry[2], reply),
        });
      }
      return { nowMs: toInteger('liveHosts', reply[0], reply), hosts };
    },
    async leave(hostsKey, hostShardsKey, hostId) {
      const reply = await call('leave', hostsKey, hostShardsKey, hostId);
      return toInteger('leave', reply, reply) === 1;
    },
    async time(anyKey) {
      const reply = await call('time', anyKey);
      return toInteger('time', reply, reply);
    },
  };
}

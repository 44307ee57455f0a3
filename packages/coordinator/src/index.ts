export type { Checkpoint, HostInfo, Lease, LeaseManager, LeaseSeed } from './leases/types.js';

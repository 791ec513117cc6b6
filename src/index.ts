/**
 * sturdy: crash-consistent persistence for Node.js.
 *
 * @packageDocumentation
 */
export { Wal } from './wal.js'
export type { WalOptions, WalEntry, RecordData, RecoveryReport } from './wal.js'
export { SturdyError } from './errors.js'
export type { ErrorCode } from './errors.js'
export { RaftLog } from './raft-log.js'
export type { RaftEntry, RaftEntryInput, LogId, RaftLogOptions } from './raft-log.js'
export type { HardState } from './raft-hard-state.js'
export { FsDirectory } from './fs-directory.js'
export { MemoryDirectory } from './memory-directory.js'
export type { Directory, FileWriter, FileReader, WriterOptions, FileData } from './directory.js'
export type { FlushPolicy } from './flush-policy.js'
export { Checkpoints } from './checkpoints.js'
export type { Checkpoint, CheckpointsOptions, DamagedCheckpoint } from './checkpoints.js'
export { checkpoint } from './checkpoint.js'
export type { CheckpointOptions } from './checkpoint.js'
export { recover } from './recover.js'
export type { RecoverOptions, Recovered } from './recover.js'
export { NoopDurableStore } from './durable-store-noop.js'
export { FileDurableStore } from './durable-store-file.js'
export { LogDurableStore } from './durable-store-log.js'
export type { LogDurableStoreOptions } from './durable-store-log.js'
export { DurableStoreBase } from './durable-store-base.js'
export type { DurableStore, DurableStoreOptions } from './durable-store.js'
export { encodeKey, decodeKey, MAX_ENCODED_NAME } from './key-encoding.js'

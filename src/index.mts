// ESM entry: the same API as the CommonJS build.
export { Wal, SturdyError } from './index.js'
export type { WalOptions, WalEntry, RecordData, RecoveryReport, ErrorCode } from './index.js'
export { RaftLog } from './index.js'
export type { RaftEntry, RaftEntryInput, LogId, RaftLogOptions, HardState } from './index.js'
export { FsDirectory, MemoryDirectory, Checkpoints, checkpoint, recover } from './index.js'
export type { Directory, FileWriter, FileReader, WriterOptions, FileData, FlushPolicy } from './index.js'
export type { Checkpoint, CheckpointsOptions, DamagedCheckpoint, CheckpointOptions, RecoverOptions, Recovered } from './index.js'

// ESM entry: the same API as the CommonJS build.
export { Wal, SturdyError } from './index.js'
export type { WalOptions, WalEntry, RecordData, RecoveryReport, ErrorCode } from './index.js'

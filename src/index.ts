/**
 * sturdy: crash-consistent persistence for Node.js.
 *
 * @packageDocumentation
 */
export { Wal } from './wal.js'
export type { WalOptions, WalEntry, RecordData, RecoveryReport } from './wal.js'
export { SturdyError } from './errors.js'
export type { ErrorCode } from './errors.js'

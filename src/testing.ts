/**
 * `sturdy/testing`: run sturdy (and your own code on top of it) on a simulated disk that loses
 * power on demand, tears writes and fails chosen writes and barriers.
 *
 * @packageDocumentation
 */
export { SimulatedDisk } from './simulated-disk.js'
export type { CrashPlan, CrashReport, InjectedError } from './simulated-disk.js'

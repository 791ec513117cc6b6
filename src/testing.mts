// ESM entry of sturdy/testing.
export { SimulatedDisk } from './testing.js'
export type { CrashPlan, CrashReport, InjectedError } from './testing.js'

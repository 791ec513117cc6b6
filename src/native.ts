// The loader `napi build` generates picks this platform's binary: a local build next to it,
// or the matching prebuilt package from npm/. Its own error on a platform without a binary is
// generic ("Cannot find native binding"), so name the platform and what to install.
import type * as Native from '../native.js'

/** The platforms with a published binary package (package.json `napi.targets`). */
const PREBUILT = ['linux-x64-gnu', 'linux-arm64-gnu', 'linux-x64-musl', 'linux-arm64-musl', 'darwin-x64', 'darwin-arm64', 'win32-x64-msvc']

function platformTag(): string {
  const { platform, arch } = process
  if (platform !== 'linux') return `${platform}-${arch}${platform === 'win32' ? '-msvc' : ''}`
  const glibc = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime
  return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`
}

function load(): typeof Native {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('../native.js') as typeof Native
  } catch (cause) {
    const tag = platformTag()
    const fix = PREBUILT.includes(tag)
      ? `install the package sturdy-${tag} (an optional dependency of sturdy: reinstall without --omit=optional or --no-optional)`
      : `no prebuilt binary exists for it (prebuilt: ${PREBUILT.join(', ')}); build from source with Rust (npm run build)`
    throw new Error(`sturdy cannot load its native binary for ${tag}: ${fix}.`, { cause })
  }
}

const native = load()

export type NativeWal = Native.NativeWal
export const NativeWal = native.NativeWal
export type NativeChunk = Native.NativeChunk
export type NativeSimDisk = Native.NativeSimDisk
export const NativeSimDisk = native.NativeSimDisk
/** The platform's durability calls for single files and directories (see crate/fs_binding.rs). */
export const { syncFile, syncFileSync, syncDir, syncDirSync, renameDurable } = native
/** Hardware-accelerated CRC32C, the same checksum the log frames use. */
export const { crc32c } = native
/**
 * The log's layout, from the Rust side that owns it: where a log's first record lies, and the
 * bytes a segment spends besides one record's payload.
 */
export const { FIRST_RECORD_LSN, SEGMENT_OVERHEAD } = native

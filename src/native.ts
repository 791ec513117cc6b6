// The loader `napi build` generates picks this platform's binary: a local build next to it,
// or the matching prebuilt package from npm/.
import native = require('../native.js')

export type NativeWal = native.NativeWal
export const NativeWal = native.NativeWal
export type NativeChunk = native.NativeChunk
export type NativeSimDisk = native.NativeSimDisk
export const NativeSimDisk = native.NativeSimDisk
/** The platform's durability calls for single files and directories (see crate/fs_binding.rs). */
export const { syncFile, syncFileSync, syncDir, syncDirSync, renameDurable } = native
/** Hardware-accelerated CRC32C, the same checksum the log frames use. */
export const { crc32c } = native

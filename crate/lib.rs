//! sturdy's native core: a segmented write-ahead log with CRC32C framing, recovery that cuts a
//! torn tail and refuses corruption, and group commit by a committer per log (whose two workers
//! overlap one write's barrier with the next write under load).

// The napi exports are called from JavaScript only, so a test build sees them as unused.
#![cfg_attr(test, allow(dead_code))]

pub mod batch;
pub mod committer;
pub mod descriptors;
pub mod dir_lock;
pub mod direct_io;
pub mod error;
pub mod frame;
pub mod log;
pub mod platform;
pub mod reader;
pub mod recovery;
pub mod segment;
pub mod simdisk;
pub mod state;
pub mod store;
pub mod wal;

mod binding;
mod crc_binding;
mod fs_binding;
mod sim_binding;

#[cfg(all(test, target_os = "linux"))]
mod direct_io_tests;
#[cfg(test)]
mod durability_tests;
#[cfg(test)]
mod fill_tests;
#[cfg(all(test, unix))]
mod lock_tests;
#[cfg(test)]
mod read_race_tests;
#[cfg(all(test, unix))]
mod store_cache_tests;
#[cfg(test)]
mod recovery_tests;

//! The servers' async runtime: tokio's multi-threaded scheduler without its LIFO slot.
//!
//! With the slot, a task woken by the running task runs next on the same thread. A response
//! (or one watcher's change) wakes its connection's task, which then wrote that one frame
//! alone: one `writev` per answer, a quarter of a service's CPU on loopback TCP under load
//! (perf). Without it, the connection task runs after the other ready tasks and its frames
//! leave together. On this 2-core machine: catalogue GetMovie at 64 in flight 0.78× -> 0.95×
//! the reference ceiling; a change reaches 10,000 watchers with p99 ~150 ms -> ~90 ms. The
//! price is ~30 µs more per lone request (GetMovie one at a time: 1.0× -> 0.8× the ceiling).
//!
//! `disable_lifo_slot` is an option tokio keeps behind `--cfg tokio_unstable`, which
//! `.cargo/config.toml` sets for the workspace. A build without it still works, with the slot.

/// A multi-threaded runtime with every driver enabled and no LIFO slot.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    #[cfg(tokio_unstable)]
    runtime.disable_lifo_slot();
    runtime.build()
}

/// Whether [`build`] can turn the LIFO slot off in this build.
pub const WITHOUT_LIFO_SLOT: bool = cfg!(tokio_unstable);

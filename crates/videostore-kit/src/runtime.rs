//! The servers' async runtime: tokio's multi-threaded scheduler without its LIFO slot.
//!
//! With the slot, a task woken by the running task runs next on the same thread. A response (or
//! one watcher's change) wakes its connection's task, which then writes that one frame alone: one
//! `writev` per answer. Without the slot, the connection task runs after the other ready tasks
//! and their frames leave together, in fewer writes. That is worth more than it costs under load
//! (many calls in flight, a change fanned out to thousands of watchers) and costs a little
//! latency for a lone request; `cargo xtask bench` measures both (the bench report has the
//! figures and the A/B runs).
//!
//! `disable_lifo_slot` is an option tokio keeps behind `--cfg tokio_unstable`, which
//! `.cargo/config.toml` sets for native targets: it must be set for tokio's own compilation, which
//! every native crate of the workspace shares, so it cannot be narrowed to the servers. A
//! `RUSTFLAGS` variable replaces that setting; a server built so still works, keeps the slot, and
//! says so when it starts, and this crate's tests fail.

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

#[cfg(test)]
mod tests {
    #[test]
    #[expect(clippy::assertions_on_constants, reason = "the constant is what the build set")]
    fn this_build_turns_the_lifo_slot_off() {
        assert!(
            super::WITHOUT_LIFO_SLOT,
            "built without --cfg tokio_unstable (a RUSTFLAGS variable replaces the flags of \
             .cargo/config.toml; add the cfg to it): the servers would keep tokio's LIFO slot"
        );
    }
}

//! `aggregator`: serves the store front until SIGINT or SIGTERM.

/// mimalloc: every page is a fan-out of small allocations (two calls out, one in), where glibc's
/// malloc and free cost far more for this churn of short-lived buffers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    videostore_kit::run::main("aggregator", aggregator::startup::Application::build)
}

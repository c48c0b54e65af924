//! `catalogue`: serves the film catalogue until SIGINT or SIGTERM.

/// mimalloc: a bulk read allocates and frees several strings per film, and glibc's allocator
/// spends much of an export consolidating its free lists.
/// Stock keeps the system allocator, which holds an idle watch stream in less memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    videostore_kit::run::main("catalogue", catalogue::startup::Application::build)
}

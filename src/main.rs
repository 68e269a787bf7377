//! The `strata` binary: a thin layer over the library (see `cli`).
mod cli;

// Chunk buffers are allocated on worker threads and freed on the writer thread; glibc's
// allocator serialises that on an arena lock (measured: a fifth of a vertical merge's
// time in futex calls). mimalloc frees across threads without a global lock.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}

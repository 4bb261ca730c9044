use clap::Parser;

fn main() -> std::process::ExitCode {
    return_large_frees_to_the_os();
    // Everything berth writes (database, WAL, keys, certificates) is for its
    // own user only, whatever the data dir's mode.
    // SAFETY: umask only sets this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cli = berth::cli::Cli::parse();
    match runtime.block_on(berth::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Every password check allocates argon2's 19 MiB working memory. glibc's
/// dynamic mmap threshold would move such blocks into an arena after the
/// first free and keep them there for good, adding ~20 MiB to idle RSS; a
/// fixed threshold makes them plain mmaps that go back to the OS when freed.
fn return_large_frees_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

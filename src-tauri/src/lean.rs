//! What the app started at login (`--hidden`: a tray icon only, no window) does not pay for.
//! Called first thing in `main`, before GTK starts and before any thread exists.

/// Measured with `make bench-desktop --only-hidden` (10,000 watched runs, Xvfb): see
/// BENCHMARKS.md, "Desktop app", run D.
pub fn before_gtk(hidden: bool) {
    // GTK 3 probes GLX at display start-up to pick its visuals, which loads libGL, the Mesa
    // driver and with it libLLVM: ~50 MiB resident (of ~140) that a tray icon never uses.
    // Only the window draws, and WebKit renders in its own processes; the window of a
    // hidden start then composites without GDK's GL (a window opened from a plain launch
    // keeps it). A GDK_GL the user set is left alone.
    if hidden && std::env::var_os("GDK_GL").is_none() {
        // Before any thread exists, so nothing reads the environment meanwhile.
        std::env::set_var("GDK_GL", "disable");
    }
    // glibc gives each thread that allocates an arena of its own, up to 8 per core; the app
    // has ~15 threads (tokio's workers: one per core) that allocate little after start-up.
    // Two arenas are plenty for that and keep each thread's few pages from pinning a heap.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; no allocation is in flight on
    // another thread, since none exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

//! Ports for servers a test must configure before they start. Shared with
//! the browser tests (`e2e`), which include this file.

/// A port of 127.0.0.1, free for TCP and UDP when asked, for a server a
/// test configures before it starts (pebble's validation port, a DNS
/// server). Taken below the kernel's ephemeral range (32768 and up), where
/// every `bind(:0)` and every outgoing connection's source port come from,
/// and never twice in one test process: so another test cannot take it in
/// the moment before its server binds it (CI saw a proxy listener lose its
/// port that way).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    // Starts where this process's id points, so that two test processes
    // at once (the API tests and the browser tests) rarely meet.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id() % u32::from(SPAN)) as u16 + 1,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN);
}

//! Free loopback ports for the brokers, gateways and servers the end-to-end tests start.

/// A port nothing listens on right now (the OS picks it; the caller binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral loopback port")
}

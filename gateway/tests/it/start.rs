//! Starting and stopping as a whole: a start that fails leaves nothing running.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::support::{free_port, test_config};

#[tokio::test]
async fn a_start_that_fails_late_leaves_no_broker_or_stage_running() {
    let dir = tempfile::tempdir().unwrap();
    // The HTTP port is taken: the start must fail...
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mqtt_port = free_port();
    let mut config = test_config(dir.path(), Vec::new(), None);
    config.api.listen = taken.local_addr().unwrap();
    config.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], mqtt_port));
    let shutdown = CancellationToken::new();
    let err = match taza_gateway::start(config, shutdown.clone()).await {
        Ok(_) => panic!("started on a port that is taken"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("binding HTTP listener"), "{err}");
    // ...and leave no embedded broker (nor anything else) behind: its port is free again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        TcpListener::bind(("127.0.0.1", mqtt_port)).is_ok(),
        "the embedded broker kept port {mqtt_port} after a failed start"
    );
    // The caller's token is the caller's: a failed start does not cancel it.
    assert!(!shutdown.is_cancelled());
}

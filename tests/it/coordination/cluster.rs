//! `weir cluster --set zookeeper.connect=...`: the in-process brokers run on an external
//! coordination service (a real ZooKeeper 3.8, or the `weir coordinator` binary) instead of the
//! embedded one, register there as Kafka does, elect a controller there, and disappear from it
//! when the process dies without a word (their sessions expire).

use std::time::Duration;

use crate::kafka_clients::Weir;
use crate::support::wait_until_async;

use super::harness::{Kind, Service};

async fn brokers_run_on(kind: Kind) {
    let service = Service::start(kind).await;
    let connect = format!(
        "zookeeper.connect={}",
        service.connect_string(service.port())
    );
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_path_buf();
    let mut weir = tokio::task::spawn_blocking(move || {
        Weir::start_in(2, 0, &dir, &[&connect, "zookeeper.session.timeout.ms=2000"])
    })
    .await
    .unwrap();

    let (observer, _) = service.client(Duration::from_secs(4)).await;
    assert_eq!(
        observer.get_children("/brokers/ids", false).await.unwrap(),
        vec!["1", "2"]
    );
    let (controller, stat) = observer.get_data("/controller", false).await.unwrap();
    let controller = String::from_utf8(controller).unwrap();
    assert!(
        controller.contains("\"brokerid\":1") || controller.contains("\"brokerid\":2"),
        "{controller}"
    );
    assert_ne!(stat.ephemeral_owner, 0, "/controller is ephemeral");
    // Brokers and clients agree on the controller the service recorded.
    let brokers = weir.bootstrap();
    let metadata = tokio::task::spawn_blocking(move || {
        crate::kafka_clients::run_with_deadline(
            std::process::Command::new("kcat").args(["-b", &brokers, "-L"]),
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    let listing = String::from_utf8_lossy(&metadata.stdout).to_string();
    assert_eq!(listing.matches("(controller)").count(), 1, "{listing}");

    // kill -9: nobody deregisters; the service notices the silence.
    weir.kill9();
    wait_until_async(
        "the dead brokers' registrations to expire",
        Duration::from_secs(30),
        || async {
            let ids = observer.get_children("/brokers/ids", false).await.ok()?;
            let controller = observer.exists("/controller", false).await.ok()?;
            (ids.is_empty() && controller.is_none()).then_some(())
        },
    )
    .await;
    observer.close().await.unwrap();
}

#[actix::test]
async fn weir_cluster_brokers_run_on_a_real_zookeeper() {
    brokers_run_on(Kind::ZooKeeper).await;
}

#[actix::test]
async fn weir_cluster_brokers_run_on_a_weir_coordinator() {
    brokers_run_on(Kind::Binary).await;
}

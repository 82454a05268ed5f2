//! One conformance suite for every coordination backend: each body below states a ZooKeeper
//! behaviour brokers and the controller rely on, and runs unchanged against the embedded
//! service, a `weir coordinator` (in process, and a subset through the real binary) and a real
//! ZooKeeper 3.8 (see the `backend!` invocations at the bottom).

use std::time::{Duration, Instant};

use futures::future::join_all;
use weir::actors::coordination::{
    CoordinationError, CreateMode, EventType, Op, OpResult, SessionEvent, SessionEvents,
    SessionState, WatchedEvent,
};

use super::harness::{Kind, Service};

/// A short session: expiry tests finish in about a second.
const SHORT: Duration = Duration::from_millis(1000);
/// The longest session the test tick allows (20 ticks).
const LONG: Duration = Duration::from_millis(4000);
/// How long any awaited event or condition may take.
const PATIENCE: Duration = Duration::from_secs(15);

fn watched(event_type: EventType, path: &str) -> SessionEvent {
    SessionEvent::Watch(WatchedEvent {
        event_type,
        path: path.to_string(),
    })
}

fn state(state: SessionState) -> SessionEvent {
    SessionEvent::State(state)
}

async fn next_event(events: &mut SessionEvents) -> SessionEvent {
    tokio::time::timeout(PATIENCE, events.recv())
        .await
        .expect("an event in time")
        .expect("the event stream is open")
}

/// Events up to and including the first one equal to `wanted`.
async fn events_until(events: &mut SessionEvents, wanted: &SessionEvent) -> Vec<SessionEvent> {
    let mut seen = Vec::new();
    loop {
        let event = next_event(events).await;
        seen.push(event.clone());
        if &event == wanted {
            return seen;
        }
    }
}

/// Everything already queued.
fn queued(events: &mut SessionEvents) -> Vec<SessionEvent> {
    std::iter::from_fn(|| events.try_recv()).collect()
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn versions_and_conditional_writes(svc: &mut Service) {
    let (c, _) = svc.client(LONG).await;
    assert_eq!(
        c.create("/v", b"one", CreateMode::Persistent).await,
        Ok("/v".into())
    );
    let (data, stat) = c.get_data("/v", false).await.unwrap();
    assert_eq!(data, b"one");
    assert_eq!(
        (stat.version, stat.data_length, stat.ephemeral_owner),
        (0, 3, 0)
    );
    assert_eq!(stat.czxid, stat.mzxid);

    assert!(matches!(
        c.set_data("/v", b"two", Some(1)).await,
        Err(CoordinationError::BadVersion { .. })
    ));
    let set = c.set_data("/v", b"two", Some(0)).await.unwrap();
    assert_eq!((set.version, set.czxid), (1, stat.czxid));
    assert!(set.mzxid > stat.mzxid);
    assert_eq!(c.set_data("/v", b"three", None).await.unwrap().version, 2);
    assert_eq!(c.get_data("/v", false).await.unwrap().0, b"three");
    assert!(matches!(
        c.delete("/v", Some(1)).await,
        Err(CoordinationError::BadVersion { .. })
    ));
    c.delete("/v", Some(2)).await.unwrap();
    assert_eq!(c.exists("/v", false).await, Ok(None));

    // ZooKeeper's error names.
    assert!(matches!(
        c.create("/v/child", b"", CreateMode::Persistent).await,
        Err(CoordinationError::NoNode { .. })
    ));
    c.create("/p", b"", CreateMode::Persistent).await.unwrap();
    assert!(matches!(
        c.create("/p", b"", CreateMode::Persistent).await,
        Err(CoordinationError::NodeExists { .. })
    ));
    c.create("/p/c", b"", CreateMode::Persistent).await.unwrap();
    let parent = c.exists("/p", false).await.unwrap().expect("/p exists");
    assert_eq!((parent.cversion, parent.num_children), (1, 1));
    assert!(matches!(
        c.delete("/p", None).await,
        Err(CoordinationError::NotEmpty { .. })
    ));
    assert!(matches!(
        c.get_data("/missing", false).await,
        Err(CoordinationError::NoNode { .. })
    ));
    assert!(matches!(
        c.set_data("/missing", b"", None).await,
        Err(CoordinationError::NoNode { .. })
    ));
    assert!(matches!(
        c.delete("/missing", None).await,
        Err(CoordinationError::NoNode { .. })
    ));
    let ephemeral = c.create("/e", b"", CreateMode::Ephemeral).await.unwrap();
    let owner = c
        .exists(&ephemeral, false)
        .await
        .unwrap()
        .expect("/e exists");
    assert_eq!(owner.ephemeral_owner, c.session_id());
    assert!(matches!(
        c.create("/e/child", b"", CreateMode::Persistent).await,
        Err(CoordinationError::NoChildrenForEphemerals { .. })
    ));

    // Kafka's makeSurePersistentPathExists and createRecursive.
    c.ensure_path("/a/b/c").await.unwrap();
    c.ensure_path("/a/b/c").await.unwrap();
    assert_eq!(c.get_children("/a", false).await.unwrap(), vec!["b"]);
    assert_eq!(
        c.create_with_parents("/x/y/z", b"deep", CreateMode::Persistent)
            .await
            .unwrap(),
        "/x/y/z"
    );
    assert_eq!(c.get_data("/x/y/z", false).await.unwrap().0, b"deep");
    c.close().await.unwrap();
}

pub async fn ephemerals_vanish_when_a_silent_session_expires(svc: &mut Service) {
    let (observer, mut observed) = svc.client(LONG).await;
    let (doomed, mut doomed_events, link) = svc.silenceable_client(SHORT).await;
    assert_eq!(
        next_event(&mut doomed_events).await,
        state(SessionState::SyncConnected)
    );
    observer.ensure_path("/brokers/ids").await.unwrap();
    doomed
        .create("/brokers/ids/1", b"{}", CreateMode::Ephemeral)
        .await
        .unwrap();
    observer
        .create("/brokers/ids/2", b"{}", CreateMode::Ephemeral)
        .await
        .unwrap();
    assert_eq!(
        observer.get_children("/brokers/ids", true).await.unwrap(),
        vec!["1", "2"]
    );
    assert!(observer
        .exists("/brokers/ids/1", true)
        .await
        .unwrap()
        .is_some());
    queued(&mut observed);

    // No more heartbeats, but no close either: only the session timeout can end it.
    let silenced = Instant::now();
    link.cut();
    assert_eq!(
        events_until(
            &mut observed,
            &watched(EventType::NodeChildrenChanged, "/brokers/ids")
        )
        .await,
        vec![
            watched(EventType::NodeDeleted, "/brokers/ids/1"),
            watched(EventType::NodeChildrenChanged, "/brokers/ids"),
        ]
    );
    assert!(
        silenced.elapsed() >= SHORT / 2,
        "deleted after {:?}: not by expiry",
        silenced.elapsed()
    );
    assert_eq!(
        observer.get_children("/brokers/ids", false).await.unwrap(),
        vec!["2"]
    );

    // The owner learns it when it can talk again.
    link.heal();
    let seen = events_until(&mut doomed_events, &state(SessionState::Expired)).await;
    assert!(
        !seen.contains(&state(SessionState::SyncConnected)),
        "an expired session reconnected: {seen:?}"
    );
    assert_eq!(
        doomed.get_data("/brokers/ids/2", false).await,
        Err(CoordinationError::SessionExpired)
    );
    observer.close().await.unwrap();
}

pub async fn watches_fire_exactly_once_and_in_order(svc: &mut Service) {
    let (w, mut events) = svc.client(LONG).await;
    let (x, _) = svc.client(LONG).await;
    assert_eq!(
        next_event(&mut events).await,
        state(SessionState::SyncConnected)
    );
    x.create("/w", b"0", CreateMode::Persistent).await.unwrap();
    x.create("/w/a", b"", CreateMode::Persistent).await.unwrap();
    // Registered several times: still one data watch on /w.
    w.get_data("/w", true).await.unwrap();
    w.get_data("/w", true).await.unwrap();
    w.exists("/w", true).await.unwrap();
    w.get_children("/w", true).await.unwrap();
    assert_eq!(w.exists("/w/new", true).await, Ok(None));

    x.set_data("/w", b"1", None).await.unwrap();
    x.set_data("/w", b"2", None).await.unwrap();
    x.create("/w/new", b"", CreateMode::Persistent)
        .await
        .unwrap();
    x.create("/w/more", b"", CreateMode::Persistent)
        .await
        .unwrap();

    // Once the watcher can see the new data, the events are already there, in order.
    let (data, stat) = w.get_data("/w", false).await.unwrap();
    assert_eq!((data.as_slice(), stat.version), (&b"2"[..], 2));
    assert_eq!(
        w.get_children("/w", false).await.unwrap(),
        vec!["a", "more", "new"]
    );
    assert_eq!(
        queued(&mut events),
        vec![
            watched(EventType::NodeDataChanged, "/w"),
            watched(EventType::NodeCreated, "/w/new"),
            watched(EventType::NodeChildrenChanged, "/w"),
        ]
    );

    // One-shot: nothing more until registered again.
    x.set_data("/w", b"3", None).await.unwrap();
    x.delete("/w/new", None).await.unwrap();
    w.exists("/w", false).await.unwrap();
    assert_eq!(queued(&mut events), vec![]);

    w.get_children("/w", true).await.unwrap();
    w.get_data("/w/a", true).await.unwrap();
    w.get_children("/w/a", true).await.unwrap();
    x.delete("/w/a", None).await.unwrap();
    assert_eq!(w.exists("/w/a", false).await, Ok(None));
    assert_eq!(
        queued(&mut events),
        vec![
            watched(EventType::NodeDeleted, "/w/a"),
            watched(EventType::NodeChildrenChanged, "/w"),
        ]
    );
    w.close().await.unwrap();
    x.close().await.unwrap();
}

pub async fn sequential_names_count_up_per_parent(svc: &mut Service) {
    let (c, _) = svc.client(LONG).await;
    c.create("/q", b"", CreateMode::Persistent).await.unwrap();
    let first = c
        .create("/q/item-", b"", CreateMode::PersistentSequential)
        .await
        .unwrap();
    let second = c
        .create("/q/item-", b"", CreateMode::EphemeralSequential)
        .await
        .unwrap();
    assert_eq!(
        (first.as_str(), second.as_str()),
        ("/q/item-0000000000", "/q/item-0000000001")
    );
    let owner = c.exists(&second, false).await.unwrap().expect("exists");
    assert_eq!(owner.ephemeral_owner, c.session_id());
    // The counter is the parent's cversion: every child create advances it, deletes do not.
    c.create("/q/other", b"", CreateMode::Persistent)
        .await
        .unwrap();
    c.delete("/q/other", None).await.unwrap();
    let third = c
        .create("/q/item-", b"", CreateMode::PersistentSequential)
        .await
        .unwrap();
    assert_eq!(third, "/q/item-0000000003");
    assert_eq!(
        c.get_children("/q", false).await.unwrap(),
        vec!["item-0000000000", "item-0000000001", "item-0000000003"]
    );
    c.create("/r", b"", CreateMode::Persistent).await.unwrap();
    assert_eq!(
        c.create("/r/x-", b"", CreateMode::PersistentSequential)
            .await,
        Ok("/r/x-0000000000".into())
    );
    c.close().await.unwrap();
}

pub async fn multi_is_all_or_nothing(svc: &mut Service) {
    let (c, _) = svc.client(LONG).await;
    c.create("/m", b"0", CreateMode::Persistent).await.unwrap();
    let create = |path: &str, mode| Op::Create {
        path: path.into(),
        data: b"x".to_vec(),
        mode,
    };
    // A bad version in the second op: the first is not applied either.
    assert!(matches!(
        c.multi(vec![
            create("/m/a", CreateMode::Persistent),
            Op::SetData {
                path: "/m".into(),
                data: b"1".to_vec(),
                version: Some(5)
            },
        ])
        .await,
        Err(CoordinationError::BadVersion { .. })
    ));
    assert!(matches!(
        c.multi(vec![
            create("/m/b", CreateMode::Persistent),
            Op::Check {
                path: "/nope".into(),
                version: None
            },
        ])
        .await,
        Err(CoordinationError::NoNode { .. })
    ));
    assert_eq!(c.exists("/m/a", false).await, Ok(None));
    assert_eq!(c.exists("/m/b", false).await, Ok(None));
    let m = c.exists("/m", false).await.unwrap().expect("exists");
    assert_eq!((m.version, m.cversion), (0, 0));

    // The controller's fenced write: a version check guarding several changes.
    let results = c
        .multi(vec![
            Op::Check {
                path: "/m".into(),
                version: Some(0),
            },
            create("/m/a", CreateMode::Persistent),
            Op::SetData {
                path: "/m".into(),
                data: b"1".to_vec(),
                version: Some(0),
            },
            create("/m/seq-", CreateMode::PersistentSequential),
            Op::Delete {
                path: "/m/a".into(),
                version: Some(0),
            },
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0], OpResult::Check);
    assert_eq!(
        results[1],
        OpResult::Create {
            path: "/m/a".into()
        }
    );
    assert!(matches!(results[2], OpResult::SetData { stat } if stat.version == 1));
    assert_eq!(
        results[3],
        OpResult::Create {
            path: "/m/seq-0000000001".into()
        }
    );
    assert_eq!(results[4], OpResult::Delete);
    assert_eq!(
        c.get_children("/m", false).await.unwrap(),
        vec!["seq-0000000001"]
    );
    assert_eq!(c.get_data("/m", false).await.unwrap().0, b"1");
    assert_eq!(c.multi(vec![]).await, Ok(vec![]));
    c.close().await.unwrap();
}

pub async fn session_expiry_across_a_coordinator_restart(svc: &mut Service) {
    let (admin, _) = svc.client(LONG).await;
    admin
        .create("/persist", b"kept", CreateMode::Persistent)
        .await
        .unwrap();
    let (stays, mut stays_events) = svc.client(LONG).await;
    assert_eq!(
        next_event(&mut stays_events).await,
        state(SessionState::SyncConnected)
    );
    stays
        .create("/stays", b"", CreateMode::Ephemeral)
        .await
        .unwrap();
    let (gone, mut gone_events, link) = svc.silenceable_client(LONG).await;
    gone.create("/gone", b"", CreateMode::Ephemeral)
        .await
        .unwrap();
    link.cut();
    drop(admin);

    svc.restart().await;
    let (fresh, _) = svc.client(LONG).await;
    assert_eq!(fresh.get_data("/persist", false).await.unwrap().0, b"kept");
    // The silent session came back from disk, and expires for want of its client.
    assert!(
        fresh.exists("/gone", false).await.unwrap().is_some(),
        "sessions are restored on restart"
    );
    eventually("the silent session's ephemeral to vanish", || async {
        fresh.exists("/gone", false).await == Ok(None)
    })
    .await;

    if svc.clients_survive_restart() {
        // The other client reconnected within its timeout: same session, same ephemeral.
        let seen = events_until(&mut stays_events, &state(SessionState::SyncConnected)).await;
        assert!(
            seen.contains(&state(SessionState::Disconnected)),
            "{seen:?}"
        );
        assert!(fresh.exists("/stays", false).await.unwrap().is_some());
        stays.set_data("/stays", b"alive", None).await.unwrap();
        link.heal();
        events_until(&mut gone_events, &state(SessionState::Expired)).await;
    } else {
        // In-process clients die with their service: their sessions expire too.
        eventually(
            "the old in-process session's ephemeral to vanish",
            || async { fresh.exists("/stays", false).await == Ok(None) },
        )
        .await;
    }
    fresh.close().await.unwrap();
}

pub async fn hundred_sessions_race_for_controller_and_one_wins(svc: &mut Service) {
    let clients: Vec<_> = join_all((0..100).map(|_| svc.client(LONG))).await;
    let attempts = join_all(clients.iter().enumerate().map(|(i, (c, _))| async move {
        let data = format!("{{\"version\":1,\"brokerid\":{i}}}");
        (
            i,
            c.create("/controller", data.as_bytes(), CreateMode::Ephemeral)
                .await,
        )
    }))
    .await;
    let winners: Vec<usize> = attempts
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    for (_, result) in &attempts {
        if let Err(e) = result {
            assert!(matches!(e, CoordinationError::NodeExists { .. }), "{e}");
        }
    }
    let winner = winners[0];
    let (watcher, _) = &clients[(winner + 1) % 100];
    let (data, stat) = watcher.get_data("/controller", true).await.unwrap();
    assert_eq!(
        data,
        format!("{{\"version\":1,\"brokerid\":{winner}}}").into_bytes()
    );
    assert_eq!(stat.ephemeral_owner, clients[winner].0.session_id());
    // The winner resigns: the seat is free again.
    clients[winner].0.close().await.unwrap();
    eventually("/controller to be free", || async {
        watcher.exists("/controller", false).await == Ok(None)
    })
    .await;
    join_all(clients.iter().map(|(c, _)| c.close())).await;
}

pub async fn a_short_link_loss_keeps_the_session_and_its_watches(svc: &mut Service) {
    let (x, _) = svc.client(LONG).await;
    let (c, mut events, link) = svc.silenceable_client(LONG).await;
    assert_eq!(
        next_event(&mut events).await,
        state(SessionState::SyncConnected)
    );
    c.create("/short", b"", CreateMode::Ephemeral)
        .await
        .unwrap();
    assert_eq!(c.exists("/flag", true).await, Ok(None));
    link.cut();
    assert_eq!(
        next_event(&mut events).await,
        state(SessionState::Disconnected)
    );
    x.create("/flag", b"", CreateMode::Persistent)
        .await
        .unwrap();
    link.heal();
    let seen = events_until(&mut events, &watched(EventType::NodeCreated, "/flag")).await;
    assert!(
        seen.contains(&state(SessionState::SyncConnected)),
        "{seen:?}"
    );
    assert!(!seen.contains(&state(SessionState::Expired)), "{seen:?}");
    assert!(c.exists("/short", false).await.unwrap().is_some());
    c.close().await.unwrap();
    x.close().await.unwrap();
}

pub async fn close_deletes_ephemerals_at_once(svc: &mut Service) {
    let (observer, _) = svc.client(LONG).await;
    let (c, mut events) = svc.client(LONG).await;
    c.create("/bye", b"", CreateMode::Ephemeral).await.unwrap();
    let closed = Instant::now();
    c.close().await.unwrap();
    eventually("/bye to vanish", || async {
        observer.exists("/bye", false).await == Ok(None)
    })
    .await;
    assert!(
        closed.elapsed() < LONG,
        "took a session timeout: not a close"
    );
    assert_eq!(
        c.get_data("/bye", false).await,
        Err(CoordinationError::SessionExpired)
    );
    events_until(&mut events, &state(SessionState::Closed)).await;
    observer.close().await.unwrap();
}

/// ZooKeeper's client pings from its own SendThread: a session outlives a stall of the thread
/// that opened it (a broker arbiter blocked by long work) longer than its timeout.
pub async fn a_session_outlives_a_stall_of_the_thread_that_opened_it(svc: &mut Service) {
    const TIMEOUT: Duration = Duration::from_millis(800);
    let worker = actix::Arbiter::new();
    let (c, mut events) = svc.client_on(&worker.handle(), TIMEOUT).await;
    assert_eq!(
        next_event(&mut events).await,
        state(SessionState::SyncConnected)
    );
    c.create("/alive", b"", CreateMode::Ephemeral)
        .await
        .unwrap();
    // The fault: the arbiter's thread blocks (a handler doing long blocking work) for three
    // session timeouts.
    let (stalled, done) = tokio::sync::oneshot::channel();
    worker.spawn_fn(move || {
        std::thread::sleep(TIMEOUT * 3);
        let _ = stalled.send(());
    });
    done.await.unwrap();
    let (observer, _) = svc.client(LONG).await;
    assert!(
        observer.exists("/alive", false).await.unwrap().is_some(),
        "the session expired while the thread that opened it was blocked"
    );
    assert_eq!(queued(&mut events), vec![]);
    c.close().await.unwrap();
    observer.close().await.unwrap();
    worker.stop();
}

/// One test per body for a backend.
macro_rules! backend {
    ($name:ident, $kind:expr, [$($body:ident),* $(,)?]) => {
        mod $name {
            use super::*;
            $(
                #[actix::test]
                async fn $body() {
                    let mut service = Service::start($kind).await;
                    super::$body(&mut service).await;
                }
            )*
        }
    };
}

macro_rules! full_suite {
    ($name:ident, $kind:expr) => {
        backend!(
            $name,
            $kind,
            [
                versions_and_conditional_writes,
                ephemerals_vanish_when_a_silent_session_expires,
                watches_fire_exactly_once_and_in_order,
                sequential_names_count_up_per_parent,
                multi_is_all_or_nothing,
                session_expiry_across_a_coordinator_restart,
                hundred_sessions_race_for_controller_and_one_wins,
                a_short_link_loss_keeps_the_session_and_its_watches,
                close_deletes_ephemerals_at_once,
                a_session_outlives_a_stall_of_the_thread_that_opened_it,
            ]
        );
    };
}

full_suite!(embedded, Kind::Embedded);
full_suite!(weir_coordinator, Kind::Remote);
full_suite!(zookeeper, Kind::ZooKeeper);
backend!(
    weir_binary,
    Kind::Binary,
    [
        versions_and_conditional_writes,
        session_expiry_across_a_coordinator_restart,
    ]
);

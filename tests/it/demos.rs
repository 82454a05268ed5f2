//! Every `weir demo` runs for real and its diagram holds the messages its case of the seed
//! names, in order (the patterns are each demo's `expect`, checked by `weir::demo::expect`):
//! the CI check that `docs/flows/` shows what really happens.

use weir::demo;

async fn run_demo(name: &str) -> demo::Report {
    crate::support::init_test_logging();
    let out = tempfile::tempdir().expect("temp dir");
    let d = demo::find(name).expect("a demo of that name");
    let report = demo::run(d, out.path(), false)
        .await
        .expect("the demo runs");
    assert!(
        report.check.is_ok(),
        "{name}: {}\n--- diagram\n{}",
        report.check.clone().unwrap_err(),
        report.mermaid
    );
    assert!(
        report.events.iter().all(|e| e.kind != "TraceDropped"),
        "{name}: the trace dropped events"
    );
    assert!(report.mermaid.starts_with("sequenceDiagram\n"));
    let page = std::fs::read_to_string(&report.markdown_path).expect("the page");
    assert!(page.contains("```mermaid\nsequenceDiagram"), "{page}");
    report
}

#[actix::test]
async fn startup_shows_registration_election_and_metadata_before_serving() {
    let r = run_demo("startup").await;
    assert_eq!(r.story.len(), 5);
}

#[actix::test]
async fn create_topic_goes_through_the_controller_to_state_znodes_and_leader_and_isr() {
    run_demo("create-topic").await;
}

#[actix::test]
async fn broker_failure_elects_a_new_leader_from_the_isr_and_the_producer_retries() {
    run_demo("broker-failure").await;
}

#[actix::test]
async fn producer_routing_refreshes_metadata_after_not_leader_or_follower() {
    run_demo("producer-routing").await;
}

#[actix::test]
async fn high_water_mark_hides_a_record_until_the_follower_has_it() {
    run_demo("high-water-mark").await;
}

#[actix::test]
async fn acks_one_loses_an_acknowledged_record_when_the_leader_dies_alone_with_it() {
    run_demo("acks").await;
}

#[actix::test]
async fn rebalance_moves_partitions_on_join_and_on_a_dead_member_resuming_committed_offsets() {
    run_demo("rebalance").await;
}

#[test]
fn every_demo_names_the_messages_of_its_case() {
    let names: Vec<&str> = demo::all().iter().map(|d| d.name).collect();
    assert_eq!(
        names,
        [
            "startup",
            "create-topic",
            "broker-failure",
            "producer-routing",
            "high-water-mark",
            "acks",
            "rebalance"
        ]
    );
    for d in demo::all() {
        assert!(d.expect.len() >= 5, "{} names too few messages", d.name);
        for e in d.expect {
            demo::expect::Expect::parse(e).unwrap_or_else(|why| panic!("{}: {why}", d.name));
        }
    }
}

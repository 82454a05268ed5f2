//! `weir perf` as a user runs it: the built binary against a `weir cluster` process, checking
//! that each mode finishes and prints one JSON line with its fields (never its speed: speed
//! is measured in benches and by hand, see benches/README.md).
//!
//! Without the `perf` feature the same command must explain in one line how to build it.

use std::process::Command;
use std::time::Duration;

use crate::kafka_clients::run_with_deadline;
#[cfg(feature = "perf")]
use crate::kafka_clients::Weir;

#[cfg(feature = "perf")]
fn perf(mode: &str, bootstrap: &str, extra: &[&str]) -> serde_json::Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .args(["perf", mode, "--bootstrap", bootstrap, "--topic", "perf-it"])
        .args([
            "--records",
            "3000",
            "--record-size",
            "100",
            "--partitions",
            "3",
        ])
        .args(["--no-progress", "--idle-timeout-s", "30"])
        .args(extra)
        .env("WEIR_LOG", "warn");
    let output = run_with_deadline(&mut command, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "weir perf {mode} failed: {stderr}\n{stdout}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line on stdout, got {stdout:?}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {}", lines[0]))
}

#[cfg(feature = "perf")]
fn assert_rates(result: &serde_json::Value) {
    assert_eq!(result["records"], 3000, "{result}");
    assert_eq!(result["errors"], 0, "{result}");
    assert!(result["records_per_s"].as_f64().unwrap() > 0.0, "{result}");
    assert!(result["mb_per_s"].as_f64().unwrap() > 0.0, "{result}");
}

#[cfg(feature = "perf")]
fn assert_latency(result: &serde_json::Value) {
    let latency = &result["latency_ms"];
    let p = |k: &str| {
        latency[k]
            .as_f64()
            .unwrap_or_else(|| panic!("latency_ms.{k} in {result}"))
    };
    assert!(p("p50") > 0.0, "{result}");
    assert!(p("p50") <= p("p99") && p("p99") <= p("p999") && p("p999") <= p("max"));
}

#[cfg(feature = "perf")]
#[test]
fn perf_produce_consume_and_e2e_report_rates_and_latency_against_weir() {
    let weir = Weir::start(1);
    let bootstrap = weir.bootstrap();

    let produced = perf("produce", &bootstrap, &["--acks", "1"]);
    assert_eq!(produced["mode"], "produce");
    assert_eq!(produced["acks"], "1");
    assert_rates(&produced);
    assert_latency(&produced);

    // The topic already holds the 3000 records: consume reads them without a prefill.
    let consumed = perf("consume", &bootstrap, &[]);
    assert_eq!(consumed["mode"], "consume");
    assert_rates(&consumed);
    assert!(consumed["latency_ms"].is_null(), "{consumed}");

    let e2e = perf("e2e", &bootstrap, &["--acks", "all", "--rate", "20000"]);
    assert_eq!(e2e["mode"], "e2e");
    assert_eq!(e2e["rate"], 20000.0);
    assert_rates(&e2e);
    assert_latency(&e2e);
}

#[cfg(feature = "perf")]
#[test]
fn perf_against_librdkafkas_mock_cluster_needs_no_broker() {
    let result = perf(
        "produce",
        "127.0.0.1:1",
        &["--acks", "1", "--set", "test.mock.num.brokers=3"],
    );
    assert_eq!(result["target"], "mock");
    assert_rates(&result);
    assert_latency(&result);
}

#[cfg(not(feature = "perf"))]
#[test]
fn perf_without_the_feature_says_how_to_build_it() {
    let output = run_with_deadline(
        Command::new(env!("CARGO_BIN_EXE_weir")).args(["perf", "produce", "--records", "10"]),
        Duration::from_secs(30),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--features perf"), "{stderr}");
}

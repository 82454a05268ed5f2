//! Network faults between real processes: each `weir broker` runs in its own network
//! namespace, joined to the test's namespace by a veth pair on a bridge, where the
//! `weir coordinator` and the Kafka client run. Taking a broker's veth down cuts it off from
//! everything (coordination, peers, clients) the way a failed switch port would.
//!
//! Making namespaces needs root (CI runs as root) and iproute2; without them the test says
//! why on stderr and passes without running (`SKIPPED: ...`), never silently.

use std::process::Command;
use std::time::Instant;

use super::{named_listeners, node_sets, wait_failed_over, BrokerProcess, Workload};
use crate::coordination::harness::start_binary_on;

/// Namespaces, veths and the bridge of one test, removed on drop.
struct Topology {
    bridge: String,
    /// (namespace, root-side veth, address in the namespace) per broker.
    hosts: Vec<(String, String, String)>,
    /// The bridge's address: where the coordinator listens.
    gateway: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Topology {
    /// `n` namespaces on a /24 of their own (picked from this process id, so concurrent test
    /// runs do not share one); traffic stays between them and this namespace.
    fn create(n: usize) -> Result<Topology, String> {
        let pid = std::process::id();
        let tag = format!("{:04x}", pid & 0xffff);
        let subnet = format!("10.231.{}", pid % 250);
        let mut topology = Topology {
            bridge: format!("wbr{tag}"),
            hosts: Vec::new(),
            gateway: format!("{subnet}.1"),
        };
        ip(&["link", "add", &topology.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", topology.gateway),
            "dev",
            &topology.bridge,
        ])?;
        ip(&["link", "set", &topology.bridge, "up"])?;
        for i in 1..=n {
            let ns = format!("weir-{tag}-{i}");
            let (root_end, ns_end) = (format!("wv{tag}{i}"), format!("wp{tag}{i}"));
            let addr = format!("{subnet}.{}", 10 + i);
            ip(&["netns", "add", &ns])?;
            topology
                .hosts
                .push((ns.clone(), root_end.clone(), addr.clone()));
            ip(&[
                "link", "add", &root_end, "type", "veth", "peer", "name", &ns_end,
            ])?;
            ip(&["link", "set", &ns_end, "netns", &ns])?;
            ip(&["link", "set", &root_end, "master", &topology.bridge])?;
            ip(&["link", "set", &root_end, "up"])?;
            let in_ns = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &ns, "ip"];
                all.extend_from_slice(args);
                ip(&all)
            };
            in_ns(&["addr", "add", &format!("{addr}/24"), "dev", &ns_end])?;
            in_ns(&["link", "set", &ns_end, "up"])?;
            in_ns(&["link", "set", "lo", "up"])?;
        }
        Ok(topology)
    }

    /// Cuts host `i` (0-based) off, or reconnects it.
    fn link(&self, i: usize, up: bool) {
        ip(&[
            "link",
            "set",
            &self.hosts[i].1,
            if up { "up" } else { "down" },
        ])
        .expect("switching a veth");
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for (ns, root_end, _) in &self.hosts {
            let _ = ip(&["link", "del", root_end]);
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// The namespaces, or `None` with the reason printed.
fn namespaces_or_skip(n: usize) -> Option<Topology> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: network namespaces need root (CI runs as root); the link-cut test did not run");
        return None;
    }
    match Topology::create(n) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!(
                "SKIPPED: cannot make network namespaces ({e}); the link-cut test did not run"
            );
            None
        }
    }
}

#[test]
fn a_broker_cut_off_the_network_fails_over_and_catches_up_when_the_link_heals() {
    let Some(topology) = namespaces_or_skip(3) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let coordinator_addr = format!("{}:{}", topology.gateway, crate::support::free_port());
    let _coordinator = runtime.block_on(start_binary_on(
        &coordinator_addr,
        &dir.path().join("coord"),
    ));
    let connect = format!("weir://{coordinator_addr}/weir");
    // Each broker has a namespace, so a port of its own: the usual ones are free there.
    let mut brokers: Vec<BrokerProcess> = topology
        .hosts
        .iter()
        .enumerate()
        .map(|(i, (ns, _, addr))| {
            let mut extra = vec![format!("broker.id={}", i + 1)];
            extra.extend(named_listeners(addr, 9092, 19092));
            let wrapper = ["ip", "netns", "exec", ns.as_str()]
                .map(String::from)
                .to_vec();
            BrokerProcess::new(node_sets(&connect, dir.path(), i + 1, extra), wrapper)
        })
        .collect();
    super::start_all(&mut brokers);
    let ids: Vec<i32> = brokers.iter().map(|b| b.id).collect();
    let w = Workload::start(&brokers, &connect, "events", dir.path());

    // Cut off a broker that leads a partition but is not the controller.
    let victim = super::a_leader_not_controlling(&w, &ids, "events");
    let host = ids.iter().position(|id| *id == victim).expect("victim");
    let epoch = w.coordination.broker_epoch(victim);
    topology.link(host, false);
    let cut = Instant::now();
    wait_failed_over(&brokers, "events", victim);
    eprintln!(
        "multinode: broker {victim} cut off: its partitions failed over in {:?}",
        cut.elapsed()
    );
    w.producer
        .wait_progress(300, "acknowledgements while the broker is cut off");

    topology.link(host, true);
    let healed = Instant::now();
    w.view.wait_full_isr("events", &ids);
    eprintln!(
        "multinode: link healed: broker {victim} caught up and rejoined every ISR in {:?}",
        healed.elapsed()
    );
    let new_epoch = w.coordination.broker_epoch(victim);
    assert!(
        new_epoch.is_some() && new_epoch != epoch,
        "broker {victim} registered anew after its session expired ({epoch:?} -> {new_epoch:?})"
    );

    let acked = w.producer.stop_and_verify(&w.bootstrap);
    eprintln!("multinode: {acked} acknowledged records all survived the link cut");
    drop(brokers);
    drop(topology);
}

//! The browser console (`weir cluster --ui ... --ui-faults`) in a real headless chromium,
//! driven through chromedriver (WebDriver): the page shows the cluster as it is, follows it
//! live, its fault buttons act on it, and it passes basic accessibility checks (accessible
//! names, labels, keyboard use, text contrast).
//!
//! Screenshots of each step are written to `$CARGO_TARGET_TMPDIR/ui-screenshots/`
//! (`target/tmp/ui-screenshots/` by default) as test artifacts.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use weir::cluster::Cluster;

use crate::coordination::harness::start_binary;
use crate::multinode::{node_sets, start_all, BrokerProcess};
use crate::support::{free_port, require_program, wait_until, wait_until_async};
use weir::demo::client::Client as KafkaClient;

/// Each on-screen change is awaited at most this long.
const DEADLINE: Duration = Duration::from_secs(15);

/// chromedriver on a free port, killed on drop.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    async fn start() -> Self {
        require_program("chromedriver");
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        wait_until_async(
            "chromedriver to listen",
            Duration::from_secs(10),
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
            },
        )
        .await;
        Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1400"],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a chromium session")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(name), png).expect("write screenshot");
}

/// The text of the first element matching `css`, if any.
async fn text(browser: &Client, css: &str) -> Option<String> {
    let e = browser.find(Locator::Css(css)).await.ok()?;
    e.text().await.ok()
}

/// Waits until the text at `css` satisfies `f`; returns it.
async fn wait_text(browser: &Client, css: &str, what: &str, f: impl Fn(&str) -> bool) -> String {
    wait_until_async(what, DEADLINE, || async {
        text(browser, css).await.filter(|t| f(t))
    })
    .await
}

fn ids(list: &str) -> Vec<i32> {
    list.split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Joins group `readers` on `orders`, reads the 5 records, commits offset 3, and stays a
/// member until told to leave.
fn consume_and_commit(bootstrap: &str, leave: std::sync::mpsc::Receiver<()>) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "readers")
        .set("client.id", "reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["orders"]).expect("subscribe");
    let deadline = Instant::now() + DEADLINE;
    let mut read = 0;
    while read < 5 {
        assert!(Instant::now() < deadline, "read {read} of 5 records");
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            m.expect("a record");
            read += 1;
        }
    }
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("orders", 0, Offset::Offset(3))
        .unwrap();
    consumer
        .commit(&offsets, CommitMode::Sync)
        .expect("commit offset 3");
    // Polling keeps the member in the group (librdkafka heartbeats meanwhile).
    while leave.try_recv().is_err() {
        let _ = consumer.poll(Duration::from_millis(100));
    }
    consumer.unsubscribe();
}

#[actix::test]
async fn the_console_follows_the_cluster_live_and_its_crash_button_moves_the_leader() {
    crate::support::init_test_logging();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::builder()
        .brokers(3)
        .base_port(0)
        .data_dir(dir.path())
        .worker_threads(2)
        .set("zookeeper.session.timeout.ms", "2000")
        .set("replica.lag.time.max.ms", "1000")
        .set("offsets.topic.num.partitions", "1")
        .set("group.initial.rebalance.delay.ms", "0")
        .start()
        .await
        .expect("cluster starts");
    let controller = cluster.status().controller;
    let addrs: Vec<_> = cluster.brokers().iter().map(|b| (b.id, b.addr)).collect();
    let (server, link) = weir::ui::start("127.0.0.1:0", true, "cluster")
        .await
        .expect("the console starts");
    // The cluster's owner, as in `weir cluster`: publishes the status, applies the page's
    // faults. It hands the cluster back when stopped.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let owner = actix_rt::spawn(async move {
        weir::cluster::console::serve(&mut cluster, false, Some(link), async {
            let _ = stop_rx.await;
        })
        .await;
        cluster
    });
    let driver = Chromedriver::start().await;
    let browser = driver.browser().await;
    browser.goto(&server.url()).await.expect("open the console");

    // 1. Three brokers and the controller.
    wait_until_async("three brokers, all up", DEADLINE, || async {
        let cards = browser
            .find_all(Locator::Css("li.card[data-state=up]"))
            .await
            .ok()?;
        (cards.len() == 3).then_some(())
    })
    .await;
    wait_text(&browser, "#controller", "the controller", |t| {
        t == format!("broker {controller}")
    })
    .await;
    let badge = text(
        &browser,
        &format!("li[data-broker=\"{controller}\"] .controller"),
    )
    .await;
    assert_eq!(badge.as_deref(), Some("controller"));
    screenshot(&browser, "1-brokers.png").await;

    // 2. Produce: the high-water mark rises on screen.
    let mut admin = KafkaClient::connect(addrs[0].1, "test")
        .await
        .expect("connect");
    assert_eq!(
        admin
            .create_topic("orders", 1, 3, None)
            .await
            .expect("create"),
        0
    );
    let row = "tr[data-partition=\"orders-0\"]";
    wait_text(
        &browser,
        &format!("{row} .isr"),
        "a full ISR for orders-0",
        |t| ids(t).len() == 3,
    )
    .await;
    wait_text(
        &browser,
        &format!("{row} .hwm"),
        "the high-water mark at 0",
        |t| t == "0",
    )
    .await;
    let leader: i32 = text(&browser, &format!("{row} .leader"))
        .await
        .and_then(|t| t.parse().ok())
        .expect("orders-0 has a leader on screen");
    let leader_addr = addrs.iter().find(|(id, _)| *id == leader).unwrap().1;
    let mut producer = KafkaClient::connect(leader_addr, "test")
        .await
        .expect("connect to the leader");
    for i in 0..5 {
        let value = Bytes::from(format!("order-{i}"));
        let produced = producer
            .produce_values("orders", 0, -1, &[value], 10_000)
            .await
            .expect("produce");
        assert_eq!(produced.error_code, 0, "producing order-{i}");
    }
    wait_text(
        &browser,
        &format!("{row} .hwm"),
        "the high-water mark at 5",
        |t| t == "5",
    )
    .await;
    screenshot(&browser, "2-produced.png").await;

    // 3. A consumer group (librdkafka, on a thread of its own: it blocks) reads, commits
    // offset 3 of 5 and stays a member: the page shows it stable, its assignment and lag 2.
    let bootstrap = addrs
        .iter()
        .map(|(_, a)| a.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let (leave_tx, leave_rx) = std::sync::mpsc::channel::<()>();
    let consumer = std::thread::spawn(move || consume_and_commit(&bootstrap, leave_rx));
    let group = "[data-group=\"readers\"]";
    wait_text(
        &browser,
        &format!("{group} .lag"),
        "the group's lag of 2",
        |t| t == "2",
    )
    .await;
    let header = text(&browser, &format!("{group} h3"))
        .await
        .unwrap_or_default();
    assert!(header.contains("Stable"), "group header {header:?}");
    let assignment = text(&browser, &format!("{group} .assignment")).await;
    assert_eq!(assignment.as_deref(), Some("orders-0"));
    screenshot(&browser, "3-group.png").await;
    let _ = leave_tx.send(());
    consumer.join().expect("the consumer thread");

    // 4. Crash the leader from the page: a new leader from the ISR, a shrunk ISR.
    let crashed = Instant::now();
    browser
        .find(Locator::Css(&format!(
            "li[data-broker=\"{leader}\"] button[data-action=crash]"
        )))
        .await
        .expect("the crash button of the leader")
        .click()
        .await
        .expect("click crash");
    wait_until_async("the crashed broker shown down", DEADLINE, || async {
        let card = browser
            .find(Locator::Css(&format!("li[data-broker=\"{leader}\"]")))
            .await
            .ok()?;
        (card.attr("data-state").await.ok()?? == "down").then_some(())
    })
    .await;
    let new_leader = wait_text(&browser, &format!("{row} .leader"), "a new leader", |t| {
        t.parse::<i32>().is_ok_and(|l| l != leader)
    })
    .await;
    let isr = wait_text(
        &browser,
        &format!("{row} .isr"),
        "the ISR without the crashed leader",
        |t| {
            let isr = ids(t);
            isr.len() == 2 && !isr.contains(&leader)
        },
    )
    .await;
    let failover = crashed.elapsed();
    assert!(ids(&isr).contains(&new_leader.parse().unwrap()));
    assert_eq!(
        text(&browser, &format!("{row} .health")).await.as_deref(),
        Some("under-replicated")
    );
    screenshot(&browser, "4-failover.png").await;
    eprintln!("crash clicked -> new leader {new_leader} and ISR [{isr}] on screen in {failover:?}");

    // 5. Accessibility basics, computed in the page.
    let audit = browser
        .execute(
            r#"
            const name = (e) => (e.getAttribute("aria-label") || e.textContent || "").trim();
            const nameless = [...document.querySelectorAll("button")].filter((b) => !name(b)).map((b) => b.outerHTML);
            const unlabelled = [...document.querySelectorAll("input, select")]
                .filter((i) => i.labels.length === 0 && !i.getAttribute("aria-label")).map((i) => i.id || i.outerHTML);
            const rgb = (c) => c.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number);
            const lum = (c) => {
                const [r, g, b] = rgb(c).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
                return 0.2126 * r + 0.7152 * g + 0.0722 * b;
            };
            const ratio = (fg, bg) => { const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x); return (a + 0.05) / (b + 0.05); };
            const body = getComputedStyle(document.body);
            const section = getComputedStyle(document.querySelector("section"));
            const th = getComputedStyle(document.querySelector("th"));
            return {
                buttons: document.querySelectorAll("button").length,
                nameless, unlabelled,
                body: ratio(body.color, body.backgroundColor),
                muted: ratio(th.color, section.backgroundColor),
            };
            "#,
            vec![],
        )
        .await
        .expect("the audit script runs");
    assert!(audit["buttons"].as_u64().unwrap() >= 15, "{audit}");
    assert_eq!(
        audit["nameless"],
        json!([]),
        "buttons without an accessible name"
    );
    assert_eq!(audit["unlabelled"], json!([]), "inputs without a label");
    assert!(
        audit["body"].as_f64().unwrap() >= 7.0,
        "main text contrast {audit}"
    );
    assert!(
        audit["muted"].as_f64().unwrap() >= 4.5,
        "secondary text contrast {audit}"
    );

    // 6. The keyboard: Tab from the crash button reaches the restart button; Enter presses it.
    browser
        .execute(
            "document.querySelector(arguments[0]).focus();",
            vec![json!(format!(
                "li[data-broker=\"{leader}\"] button[data-action=crash]"
            ))],
        )
        .await
        .expect("focus the crash button");
    browser
        .active_element()
        .await
        .unwrap()
        .send_keys(&Key::Tab.to_string())
        .await
        .unwrap();
    let focused = browser
        .execute(
            "return document.activeElement.getAttribute('aria-label');",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(focused, json!(format!("Restart broker {leader}")));
    browser
        .active_element()
        .await
        .unwrap()
        .send_keys(&Key::Enter.to_string())
        .await
        .unwrap();
    wait_text(&browser, "#fault-result", "the restart answered", |t| {
        t == format!("ok restart {leader}")
    })
    .await;
    wait_until_async("the restarted broker shown up", DEADLINE, || async {
        let card = browser
            .find(Locator::Css(&format!("li[data-broker=\"{leader}\"]")))
            .await
            .ok()?;
        (card.attr("data-state").await.ok()?? == "up").then_some(())
    })
    .await;
    screenshot(&browser, "5-restarted.png").await;

    browser.close().await.expect("close the browser");
    let _ = stop_tx.send(());
    let cluster = owner.await.expect("the owner loop");
    drop(server);
    cluster.shutdown().await.expect("clean shutdown");
}

/// One plain HTTP/1.1 `request` to the console at `url` (`http://host:port/`): the status
/// line and the body.
pub fn http(url: &str, request: &str) -> (String, String) {
    use std::io::{Read, Write};
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).expect("connect to the console");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a header end");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

#[test]
fn weir_broker_with_ui_listener_serves_a_read_only_console_of_its_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let _coordinator = runtime.block_on(start_binary(port, &dir.path().join("coordination")));
    let connect = format!("weir://127.0.0.1:{port}/weir");
    let mut brokers: Vec<BrokerProcess> = (1..=2)
        .map(|n| {
            let mut extra = vec![
                format!("broker.id={n}"),
                format!("listeners=PLAINTEXT://127.0.0.1:{}", free_port()),
                "default.replication.factor=2".into(),
                "offsets.topic.replication.factor=2".into(),
            ];
            if n == 1 {
                extra.push("ui.listener=127.0.0.1:0".into());
            }
            BrokerProcess::new(node_sets(&connect, dir.path(), n, extra), vec![])
        })
        .collect();
    start_all(&mut brokers);
    let console = brokers[0]
        .console
        .clone()
        .expect("broker 1 prints its console's URL");
    assert!(brokers[1].console.is_none());
    let client = brokers[0].client.parse().expect("a client address");
    let created = runtime.block_on(async {
        KafkaClient::connect(client, "test")
            .await
            .expect("connect")
            .create_topic("orders", 1, 2, None)
            .await
            .expect("create")
    });
    assert_eq!(created, 0);

    let status = || -> serde_json::Value {
        let (line, body) = http(&console, "GET /api/status HTTP/1.1\r\n\r\n");
        assert_eq!(line, "HTTP/1.1 200 OK");
        serde_json::from_str(&body).expect("status JSON")
    };
    let seen = wait_until(
        "both brokers and orders-0 with a full ISR",
        DEADLINE,
        || {
            let s = status();
            let up = s["brokers"]
                .as_array()?
                .iter()
                .filter(|b| b["state"] == "up")
                .count();
            let isr = s["partitions"]
                .as_array()?
                .iter()
                .find(|p| p["topic"] == "orders")?["isr"]
                .as_array()?
                .len();
            (up == 2 && isr == 2).then_some(s)
        },
    );
    let controller = seen["controller"].as_i64().unwrap();
    assert!(controller == 1 || controller == 2, "{seen}");
    assert!(seen["controller_epoch"].as_i64().unwrap() >= 1);
    let (line, page) = http(&console, "GET / HTTP/1.1\r\n\r\n");
    assert_eq!(line, "HTTP/1.1 200 OK");
    assert!(page.contains("weir console"));
    let (_, info) = http(&console, "GET /api/info HTTP/1.1\r\n\r\n");
    assert!(
        info.contains("\"faults\":false") && info.contains("broker 1"),
        "{info}"
    );
    let body = r#"{"command":"crash 2"}"#;
    let (line, _) = http(
        &console,
        &format!(
            "POST /api/fault HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(
        line, "HTTP/1.1 403 Forbidden",
        "a broker's console is read-only"
    );

    // Broker 2 dies: broker 1's view marks it down once the controller has noticed.
    brokers[1].kill9();
    wait_until("broker 2 shown down", DEADLINE, || {
        let s = status();
        s["brokers"]
            .as_array()?
            .iter()
            .any(|b| b["id"] == 2 && b["state"] == "down")
            .then_some(())
    });
}

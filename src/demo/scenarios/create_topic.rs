//! Case 3: CreateTopics reaches an ordinary broker, which forwards it to the controller; the
//! controller places the replicas, writes the assignment, then each partition's state znode
//! (pipelined, one fenced multi per partition, as Kafka's controller), and
//! tells the replicas (LeaderAndIsr) and every broker (UpdateMetadata).

use futures::future::LocalBoxFuture;

use super::super::{Demo, Stage};
use super::ids;

pub const DEMO: Demo = Demo {
    name: "create-topic",
    title: "Creating a topic",
    seed: "Case 3",
    sets: &[],
    trace_from_start: false,
    expect: &[
        "client:admin -> @receiver : CreateTopics orders*",
        "@receiver -> @controller : CreateTopics orders*",
        "@controller : PlaceReplicas orders*",
        "@controller -> coord : multi /brokers/topics/orders *fenced*",
        "coord -> @controller : multi*ok",
        "@controller -> coord : multi /brokers/topics/orders/partitions/*writes 1 partition state znode",
        "coord -> @controller : multi*ok",
        "@controller -> * : LeaderAndIsr*",
        "@controller -> * : UpdateMetadata*",
        "@receiver -> client:admin : CreateTopics*ok",
    ],
    hide: &[],
    run,
};

fn run(stage: &mut Stage) -> LocalBoxFuture<'_, anyhow::Result<()>> {
    Box::pin(script(stage))
}

async fn script(s: &mut Stage) -> anyhow::Result<()> {
    let controller = s.controller().await?;
    let receiver = (1..=3).find(|b| *b != controller).unwrap_or(1);
    s.role("controller", controller);
    s.role("receiver", receiver);
    s.start_trace()?;
    let mut admin = s.client(receiver, "admin").await?;
    let code = admin.create_topic("orders", 3, 3, None).await?;
    anyhow::ensure!(code == 0, "CreateTopics answered {code}");
    s.say(format!(
        "Step 3.1: an admin client sent CreateTopics(orders, 3 partitions, RF 3) to broker \
         {receiver}, an ordinary broker."
    ));
    s.say(format!(
        "Step 3.2: broker {receiver} forwarded it to the controller, broker {controller}: only \
         the controller changes cluster metadata."
    ));
    let mut placement = Vec::new();
    for p in 0..3 {
        let st = s
            .wait_partition("orders", p, "a leader and a full ISR", |x| {
                x.leader >= 0 && x.isr.len() == 3
            })
            .await?;
        placement.push(format!(
            "orders-{p} → {} (leader {})",
            ids(&st.replicas),
            st.leader
        ));
    }
    s.say(format!(
        "Step 3.3: the controller placed the replicas in memory: {}.",
        placement.join(", ")
    ));
    s.say(
        "Step 3.4: it wrote the assignment /brokers/topics/orders and each partition's state \
         znode /brokers/topics/orders/partitions/<p>/state (leader, ISR, leader epoch, \
         controller epoch) in one multi, fenced by the controller epoch.",
    );
    s.say(
        "Step 3.5: the coordination service notified no broker; the controller sent LeaderAndIsr \
         to the replicas (each created its log and became leader or follower, and the followers \
         started fetching) and UpdateMetadata to every broker.",
    );
    let mut app = s.client(controller, "app").await?;
    let leaders = app.leaders("orders").await?;
    let leaders: Vec<String> = leaders
        .iter()
        .map(|(p, l)| format!("orders-{p} → broker {l}"))
        .collect();
    s.say(format!(
        "The topic is live: Metadata now names the leaders ({}).",
        leaders.join(", ")
    ));
    s.kafka(
        "In ZooKeeper-mode Kafka before 2.8 the receiving broker wrote /brokers/topics/<t> \
         itself and the controller learned of it through its watch; forwarding the request to \
         the controller (KIP-590) is the path shown here. Either way only the controller writes \
         partition states.",
    );
    s.kafka(
        "Kafka's first leader epoch is 0 (the seed's example shows 1); LeaderAndIsr goes only to \
         each partition's replicas, UpdateMetadata to every broker.",
    );
    Ok(())
}

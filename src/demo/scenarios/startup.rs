//! Cases 1–2: brokers register, one wins `/controller`, and each broker serves clients only
//! once the controller's UpdateMetadata filled its cache.

use futures::future::LocalBoxFuture;

use super::super::{Demo, Stage};
use super::ids;

pub const DEMO: Demo = Demo {
    name: "startup",
    title: "Broker startup, controller election, metadata before serving",
    seed: "Cases 1–2",
    sets: &[],
    trace_from_start: true,
    expect: &[
        "b* -> coord : create /brokers/ids/*ephemeral",
        "@controller -> coord : multi /controller*",
        "coord -> @controller : multi*ok",
        "@controller : ControllerElected*",
        "@controller -> coord : getChildren /brokers/ids*watch",
        "@controller -> * : UpdateMetadata*Full*",
        "client:app -> @asked : Metadata*",
        "@asked -> client:app : Metadata*controller*",
    ],
    hide: &[],
    run,
};

fn run(stage: &mut Stage) -> LocalBoxFuture<'_, anyhow::Result<()>> {
    Box::pin(script(stage))
}

async fn script(s: &mut Stage) -> anyhow::Result<()> {
    let controller = s.controller().await?;
    s.role("controller", controller);
    let others: Vec<i32> = (1..=3).filter(|b| *b != controller).collect();
    s.say(
        "Step 1.1–1.2: each broker opened a coordination session and created its ephemeral \
         /brokers/ids/<id>: the session is the broker's liveness (the coordination service \
         never pings brokers; a dead session deletes the node).",
    );
    s.say(format!(
        "Step 1.3: every broker tried to create the ephemeral /controller; broker {controller} \
         won (ControllerElected) and brokers {} found it taken and watch it.",
        ids(&others)
    ));
    s.say(
        "Step 1.4: the controller watches /brokers/ids (getChildren with a watch) and \
         /brokers/topics; the other brokers watch only /controller.",
    );
    s.say(format!(
        "Case 2: the controller sent every broker a full UpdateMetadata; each broker opened its \
         client listener only once it had one (`weir cluster` prints `ready` after all {}).",
        3
    ));
    let asked = others[0];
    s.role("asked", asked);
    let mut app = s.client(asked, "app").await?;
    let m = app.metadata(&[]).await?;
    anyhow::ensure!(
        m.controller_id.0 == controller,
        "broker {asked} names {} as controller",
        m.controller_id.0
    );
    s.say(format!(
        "A client asked broker {asked} for Metadata: it answered from its own cache — {} brokers, \
         controller {} — without asking the controller or the coordination service.",
        m.brokers.len(),
        m.controller_id.0
    ));
    s.kafka(
        "The election is one atomic multi: create the ephemeral /controller and bump \
         /controller_epoch; every later controller write is fenced by that epoch's version, so \
         a deposed controller cannot write.",
    );
    s.kafka(
        "The controller also sends LeaderAndIsr for the partitions each broker hosts (none on a \
         fresh cluster), and it reads the whole cluster from the coordination service when it \
         takes over (onControllerFailover).",
    );
    Ok(())
}

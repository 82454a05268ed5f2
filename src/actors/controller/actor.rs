//! The controller actor, one per broker: it keeps the broker registered (Case 1: ephemeral
//! `/brokers/ids/<id>`), stands for election (ephemeral `/controller`, `/controller_epoch`
//! bumped in the same multi), and, while elected, is the cluster's one decision maker
//! (Cases 2–4, Step 13): it watches `/brokers/ids`, `/brokers/topics`, `/admin/delete_topics`
//! and `/config/changes`, places replicas, elects leaders from the ISR, records every decision
//! with writes fenced by the controller epoch, and pushes LeaderAndIsr and UpdateMetadata.
//!
//! Like Kafka's controller it handles one event at a time: every handler takes the
//! [`Core`] out of the actor, runs to completion (coordination reads and writes, broker
//! requests) and puts it back, while the actor's mailbox waits (`AtomicResponse`/`ctx.wait`).
//! The decisions themselves are pure functions of [`ControllerContext`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use super::channel::ControllerChannelManager;
use super::context::{ControllerContext, LeaderIsr, LiveBroker, StateChange, TopicInfo};
use super::messages::*;
use super::placement::{self, PlacementBroker};
use super::zk_client::{FencedError, KafkaZkClient};
use crate::actors::broker::{
    BrokerConfigChanged, LeaderAndIsr, LeaderAndIsrPartitionState, StopReplica, TopicConfigChanged,
    UpdateMetadata, UpdateMetadataKind, UpdateMetadataTopicState,
};
use crate::actors::controller::messages::{
    AlterConfigOp, AlterEntityConfigs, ConfigChange, ConfigEntity, CreatePartitions,
    CreateTopicOutcome, CreateTopics, CreatedTopic, DeleteTopicOutcome, DeleteTopics, TopicRef,
};
use crate::actors::coordination::{
    CoordinationClient, CoordinationError, CreateMode, EventType, Op, SessionEvent, SessionState,
    WatchedEvent,
};
use crate::actors::metadata_cache::{
    validate_topic_name, BrokerEndpoint, ListenerEndpoint, LEADER_DURING_DELETE,
};
use crate::config::dynamic;
use crate::config::{BrokerConfig, TopicConfig};
use crate::protocol::error::ApiError;
use crate::storage::TopicPartition;
use crate::transport::peer::{PeerRequest, PeerResponse, Peers};
use crate::znodes::{self, paths};

/// Opens a new coordination session after the old one expired.
pub type Connector = Arc<
    dyn Fn() -> BoxFuture<'static, anyhow::Result<(CoordinationClient, SessionEventStream)>>
        + Send
        + Sync,
>;

/// The session's events, in order.
pub type SessionEventStream = crate::actors::coordination::SessionEvents;

/// What a controller needs from its broker.
pub struct ControllerDeps {
    pub broker_id: i32,
    pub config: Arc<BrokerConfig>,
    pub peers: Peers,
    /// This broker's `/brokers/ids/<id>` content.
    pub registration: znodes::BrokerRegistration,
    pub connector: Connector,
    /// Told the broker epoch each time the broker (re-)registers.
    pub on_registered: Arc<dyn Fn(i64) + Send + Sync>,
}

/// While elected.
struct Active {
    ctx: ControllerContext,
    /// `/controller_epoch`'s version after our election: every write checks it.
    epoch_version: i32,
    channels: ControllerChannelManager,
    cluster_id: String,
}

/// Everything the event handlers work on.
struct Core {
    deps: Arc<ControllerDeps>,
    zk: KafkaZkClient,
    /// The broker epoch of our current registration.
    broker_epoch: i64,
    /// The controller id last read from `/controller` (−1 when none).
    controller_id: i32,
    active: Option<Active>,
}

pub struct Controller {
    core: Option<Core>,
    /// Handed to the actor's stream on start.
    initial_events: Option<SessionEventStream>,
    /// The current session, outside `core` (which an event handler may hold across awaits),
    /// for fault injection: cutting its link, expiring it.
    session: CoordinationClient,
    /// The broker ↔ coordination link is cut (fault injection); a renewed session starts cut.
    link_cut: bool,
    /// The longest an admin answer waits for the brokers (see [`BrokerAcks`]).
    answer_wait_cap: Duration,
    /// Set by [`CloseSession`]: the events of the closing session are no longer handled.
    closing: bool,
}

impl Controller {
    pub fn new(
        deps: ControllerDeps,
        client: CoordinationClient,
        events: SessionEventStream,
    ) -> Self {
        // The forwarding broker gives up after controller.socket.timeout.ms; answer before.
        let socket_timeout = deps.config.controller_socket_timeout_ms.max(2_000) as u64;
        Self {
            session: client.clone(),
            link_cut: false,
            answer_wait_cap: Duration::from_millis(socket_timeout * 3 / 4),
            closing: false,
            core: Some(Core {
                deps: Arc::new(deps),
                zk: KafkaZkClient::new(client),
                broker_epoch: -1,
                controller_id: -1,
                active: None,
            }),
            initial_events: Some(events),
        }
    }

    /// Runs `f` on the core with the mailbox held until it completes.
    fn with_core<R, F>(&mut self, f: F) -> AtomicResponse<Self, R>
    where
        R: 'static,
        F: FnOnce(Core) -> BoxFuture<'static, (Core, R)> + 'static,
        R: Default,
    {
        match self.core.take() {
            Some(core) => AtomicResponse::new(Box::pin(f(core).into_actor(self).map(
                |(core, out), act, _| {
                    act.core = Some(core);
                    out
                },
            ))),
            None => AtomicResponse::new(Box::pin(fut::ready(R::default()))),
        }
    }
}

impl Actor for Controller {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(events) = self.initial_events.take() {
            ctx.add_stream(tokio_stream_from(events));
        }
        ctx.notify(Startup);
        let interval = self
            .core
            .as_ref()
            .map(|c| c.deps.config.leader_imbalance_check_interval_seconds.max(1) as u64)
            .unwrap_or(300);
        ctx.run_interval(Duration::from_secs(interval), |_, ctx| {
            ctx.notify(AutoLeaderRebalance)
        });
    }
}

/// Adapts the session's receiver to a `Stream` for `add_stream`.
fn tokio_stream_from(events: SessionEventStream) -> impl futures::Stream<Item = SessionEvent> {
    futures::stream::unfold(events, |mut events| async move {
        events.recv().await.map(|e| (e, events))
    })
}

// ---------------------------------------------------------------------------------------
// Internal events

#[derive(Message)]
#[rtype(result = "()")]
struct Startup;

#[derive(Message)]
#[rtype(result = "()")]
struct AutoLeaderRebalance;

/// A new session after expiry.
#[derive(Message)]
#[rtype(result = "()")]
struct SessionRenewed(CoordinationClient);

/// This broker took a log dir offline: write Kafka's log dir event notification, so the
/// active controller (maybe this one) moves the leadership of its replicas there.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NotifyLogDirFailure;

impl Handler<NotifyLogDirFailure> for Controller {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: NotifyLogDirFailure, _: &mut Self::Context) -> Self::Result {
        self.with_core(|core| {
            Box::pin(async move {
                let id = core.deps.broker_id;
                let data = znodes::to_bytes(&znodes::LogDirEventNotification::failure(id));
                match core
                    .zk
                    .client
                    .create(paths::LOG_DIR_EVENT_PREFIX, &data, CreateMode::PersistentSequential)
                    .await
                {
                    Ok(path) => tracing::info!(broker = id, %path, "told the controller a log dir failed"),
                    Err(e) => tracing::error!(broker = id, error = %e, "cannot write the log dir event notification"),
                }
                (core, ())
            })
        })
    }
}

/// Asks whether this broker is the active controller (tests, status).
#[derive(Message)]
#[rtype(result = "ControllerStatus")]
pub struct GetStatus;

#[derive(Debug, Clone, Default, PartialEq, Eq, MessageResponse)]
pub struct ControllerStatus {
    pub broker_id: i32,
    pub is_active: bool,
    pub controller_id: i32,
    pub epoch: i32,
    pub broker_epoch: i64,
}

impl Handler<GetStatus> for Controller {
    type Result = ControllerStatus;

    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> ControllerStatus {
        match &self.core {
            Some(core) => ControllerStatus {
                broker_id: core.deps.broker_id,
                is_active: core.active.is_some(),
                controller_id: core.controller_id,
                epoch: core.active.as_ref().map(|a| a.ctx.epoch).unwrap_or(-1),
                broker_epoch: core.broker_epoch,
            },
            None => ControllerStatus::default(),
        }
    }
}

impl Handler<Startup> for Controller {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Startup, _: &mut Self::Context) -> Self::Result {
        self.with_core(|mut core| {
            Box::pin(async move {
                if let Err(e) = core.register_and_elect().await {
                    tracing::warn!(broker = core.deps.broker_id, error = %e, "registration or election failed; will retry on the next session event");
                }
                (core, ())
            })
        })
    }
}

impl StreamHandler<SessionEvent> for Controller {
    fn handle(&mut self, event: SessionEvent, ctx: &mut Self::Context) {
        if self.closing {
            return;
        }
        let Some(mut core) = self.core.take() else {
            // The core is out while a handler holds it (`ctx.wait`). Waits should hold the
            // stream back, but actix 0.13's context polls its streams right after a mailbox
            // message that started a wait, before merging that wait: one event can slip in.
            // Dropping it would lose a watch for good (a watch not re-armed) or an expiry
            // (a broker never re-registering), so it goes back through the mailbox, which
            // runs as soon as the wait is over.
            tracing::debug!(
                ?event,
                "coordination event while the controller is busy; redelivered"
            );
            ctx.notify(Redeliver(event));
            return;
        };
        crate::observe::coord::session_event(
            core.deps.broker_id,
            self.session.session_id(),
            &event,
        );
        let addr = ctx.address();
        let work = async move {
            match event {
                SessionEvent::Watch(watch) => {
                    if core.on_watch(watch.clone()).await {
                        actix::spawn(async move {
                            tokio::time::sleep(WATCH_RETRY_BACKOFF).await;
                            addr.do_send(Redeliver(SessionEvent::Watch(watch)));
                        });
                    }
                }
                SessionEvent::State(SessionState::Expired) => {
                    tracing::warn!(
                        broker = core.deps.broker_id,
                        "coordination session expired; resigning and re-registering"
                    );
                    core.resign();
                    let connector = core.deps.connector.clone();
                    // Reconnect off the mailbox: the new session arrives as a message.
                    actix::spawn(async move {
                        let mut backoff = Duration::from_millis(100);
                        loop {
                            match connector().await {
                                Ok((client, events)) => {
                                    addr.do_send(NewSession(client, events));
                                    break;
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "reconnecting to the coordination service failed");
                                    tokio::time::sleep(backoff).await;
                                    backoff = (backoff * 2).min(Duration::from_secs(5));
                                }
                            }
                        }
                    });
                }
                SessionEvent::State(state) => {
                    tracing::debug!(
                        broker = core.deps.broker_id,
                        ?state,
                        "coordination session state"
                    );
                }
            }
            core
        };
        ctx.wait(
            work.into_actor(self)
                .map(|core, act, _| act.core = Some(core)),
        );
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // The session's event stream ends when its session ends; a new one comes with NewSession.
    }
}

/// A coordination event handled again: one that arrived while the core was out, or a watch
/// whose handling lost the connection.
#[derive(Message)]
#[rtype(result = "()")]
struct Redeliver(SessionEvent);

/// How long a watch event waits before it is handled again after a connection loss.
const WATCH_RETRY_BACKOFF: Duration = Duration::from_millis(200);

impl Handler<Redeliver> for Controller {
    type Result = ();

    fn handle(&mut self, msg: Redeliver, ctx: &mut Self::Context) {
        <Self as StreamHandler<SessionEvent>>::handle(self, msg.0, ctx);
    }
}

/// Faults on this broker's coordination session (the in-process cluster's fault injection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "Result<(), String>")]
pub enum SessionFault {
    /// Cut the broker ↔ coordination link: requests fail with ConnectionLoss and heartbeats
    /// stop, so the session expires after its timeout unless healed first.
    Cut,
    Heal,
    /// Stop as a crashed broker does: the session is abandoned (not closed), so its
    /// ephemerals vanish only when it expires.
    Crash,
}

impl Handler<SessionFault> for Controller {
    type Result = Result<(), String>;

    fn handle(&mut self, fault: SessionFault, ctx: &mut Self::Context) -> Self::Result {
        let link = self.session.link_switch();
        match fault {
            SessionFault::Cut | SessionFault::Heal => {
                let link = link.ok_or("only the embedded coordination service can cut links")?;
                self.link_cut = fault == SessionFault::Cut;
                if self.link_cut {
                    link.cut();
                } else {
                    link.heal();
                }
            }
            SessionFault::Crash => {
                if let Some(link) = link {
                    link.cut();
                }
                ctx.stop();
            }
        }
        Ok(())
    }
}

/// A clean stop (the last step of a controlled shutdown): close the coordination session, so
/// the broker's ephemerals (`/brokers/ids/<id>`, `/controller` if it holds it) go at once and
/// the cluster reacts without waiting for the session timeout, then stop the actor.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct CloseSession;

impl Handler<CloseSession> for Controller {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: CloseSession, _: &mut Self::Context) -> Self::Result {
        self.closing = true;
        let session = self.session.clone();
        Box::pin(
            async move {
                if let Err(e) = session.close().await {
                    tracing::debug!(error = %e, "closing the coordination session failed");
                }
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}

/// This broker's current coordination session (a cheap clone of its client).
#[derive(Message)]
#[rtype(result = "CoordinationClient")]
pub struct SessionClient;

impl Handler<SessionClient> for Controller {
    type Result = MessageResult<SessionClient>;

    fn handle(&mut self, _: SessionClient, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.session.clone())
    }
}

/// The id of this broker's current coordination session.
#[derive(Debug, Message)]
#[rtype(result = "i64")]
pub struct CurrentSession;

impl Handler<CurrentSession> for Controller {
    type Result = i64;

    fn handle(&mut self, _: CurrentSession, _: &mut Self::Context) -> i64 {
        self.session.session_id()
    }
}

/// A fresh session and its events (after expiry).
#[derive(Message)]
#[rtype(result = "()")]
struct NewSession(CoordinationClient, SessionEventStream);

impl Handler<NewSession> for Controller {
    type Result = ();

    fn handle(&mut self, msg: NewSession, ctx: &mut Self::Context) {
        self.session = msg.0.clone();
        if self.link_cut {
            if let Some(link) = self.session.link_switch() {
                link.cut();
            }
        }
        ctx.add_stream(tokio_stream_from(msg.1));
        ctx.notify(SessionRenewed(msg.0));
    }
}

impl Handler<SessionRenewed> for Controller {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: SessionRenewed, _: &mut Self::Context) -> Self::Result {
        self.with_core(move |mut core| {
            Box::pin(async move {
                core.zk = KafkaZkClient::new(msg.0);
                if let Err(e) = core.register_and_elect().await {
                    tracing::warn!(broker = core.deps.broker_id, error = %e, "re-registration after session expiry failed");
                }
                (core, ())
            })
        })
    }
}

impl Handler<AutoLeaderRebalance> for Controller {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: AutoLeaderRebalance, _: &mut Self::Context) -> Self::Result {
        self.with_core(|mut core| {
            Box::pin(async move {
                if core.deps.config.auto_leader_rebalance_enable {
                    if let Some(active) = core.active.as_ref() {
                        let changes = active.ctx.preferred_elections(None);
                        if !changes.is_empty() {
                            tracing::info!(
                                count = changes.len(),
                                "auto leader rebalance: moving leaders back to preferred replicas"
                            );
                            core.commit_changes(changes, false).await;
                        }
                    }
                }
                (core, ())
            })
        })
    }
}

// ---------------------------------------------------------------------------------------
// Requests from brokers and admin clients

fn not_controller(broker_id: i32) -> ApiError {
    ApiError::with_message(
        ResponseError::NotController,
        format!("broker {broker_id} is not the active controller"),
    )
}

impl Handler<AlterPartition> for Controller {
    type Result = AtomicResponse<Self, AlterPartitionResult>;

    fn handle(&mut self, msg: AlterPartition, _: &mut Self::Context) -> Self::Result {
        self.with_core_or(not_controller, move |mut core| {
            Box::pin(async move {
                let out = core.alter_partition(msg).await;
                (core, out)
            })
        })
    }
}

impl Handler<ControlledShutdown> for Controller {
    type Result = AtomicResponse<Self, ControlledShutdownResult>;

    fn handle(&mut self, msg: ControlledShutdown, _: &mut Self::Context) -> Self::Result {
        self.with_core_or(not_controller, move |mut core| {
            Box::pin(async move {
                let out = core.controlled_shutdown(msg).await;
                (core, out)
            })
        })
    }
}

impl Handler<ElectLeaders> for Controller {
    type Result = AtomicResponse<Self, ElectLeadersResult>;

    fn handle(&mut self, msg: ElectLeaders, _: &mut Self::Context) -> Self::Result {
        self.with_core_or(not_controller, move |mut core| {
            Box::pin(async move {
                let out = core.elect_leaders(msg).await;
                (core, out)
            })
        })
    }
}

/// The brokers' answers to the LeaderAndIsr and UpdateMetadata that made new partitions
/// live. CreateTopics and CreatePartitions answer once they are in (Kafka's
/// `DelayedCreatePartitions`), but the wait happens outside the controller: holding it for
/// the brokers would stall every other controller event behind a slow broker, and under load
/// outlast the forwarding broker's own timeout.
#[derive(Default)]
pub struct BrokerAcks(Vec<PeerAnswer>);

impl BrokerAcks {
    /// True if every broker answered within `within`.
    async fn wait(self, within: Duration) -> bool {
        tokio::time::timeout(within, futures::future::join_all(self.0))
            .await
            .is_ok()
    }
}

/// The part of an admin request that holds the controller: validate, write the coordination
/// service, send the brokers their requests.
#[derive(Message)]
#[rtype(result = "(R, BrokerAcks)")]
struct Start<M, R: 'static>(M, std::marker::PhantomData<R>);

impl Controller {
    /// How long an admin answer waits for the brokers: the request's `timeout_ms` when it
    /// gives one, and always within the forwarding broker's `controller.socket.timeout.ms`,
    /// so that the answer, not a transport timeout, reaches the client. True if the brokers
    /// did not all answer in time and the request asked for a limit; None if the controller
    /// stopped meanwhile.
    fn answer_after_acks<M, R>(
        &self,
        ctx: &mut Context<Self>,
        msg: M,
        timeout_ms: i32,
    ) -> ResponseFuture<Option<(R, bool)>>
    where
        M: Send + 'static,
        R: Send + 'static,
        Self: Handler<Start<M, R>>,
    {
        let cap = self.answer_wait_cap;
        let within = if timeout_ms > 0 {
            cap.min(Duration::from_millis(timeout_ms as u64))
        } else {
            cap
        };
        let start = ctx.address().send(Start(msg, std::marker::PhantomData));
        Box::pin(async move {
            let (out, acks) = start.await.ok()?;
            let in_time = acks.wait(within).await;
            Some((out, !in_time && timeout_ms > 0))
        })
    }
}

impl Handler<Start<CreateTopics, Vec<CreateTopicOutcome>>> for Controller {
    type Result = AtomicResponse<Self, (Vec<CreateTopicOutcome>, BrokerAcks)>;

    fn handle(
        &mut self,
        msg: Start<CreateTopics, Vec<CreateTopicOutcome>>,
        _: &mut Self::Context,
    ) -> Self::Result {
        self.with_core(move |mut core| {
            Box::pin(async move {
                let out = core.create_topics(msg.0).await;
                (core, out)
            })
        })
    }
}

impl Handler<CreateTopics> for Controller {
    type Result = ResponseFuture<Vec<CreateTopicOutcome>>;

    fn handle(&mut self, msg: CreateTopics, ctx: &mut Self::Context) -> Self::Result {
        let timeout_ms = msg.timeout_ms;
        let names: Vec<String> = msg.topics.iter().map(|t| t.name.clone()).collect();
        let answer = self.answer_after_acks(ctx, msg, timeout_ms);
        Box::pin(async move {
            let Some((mut outcomes, timed_out)) = answer.await else {
                return names
                    .into_iter()
                    .map(|name| CreateTopicOutcome {
                        name,
                        result: Err(not_controller(-1)),
                    })
                    .collect();
            };
            if timed_out {
                for o in outcomes.iter_mut().filter(|o| o.result.is_ok()) {
                    o.result = Err(ApiError::with_message(
                        ResponseError::RequestTimedOut,
                        format!(
                            "Topic '{}' was created, but not every broker has it yet.",
                            o.name
                        ),
                    ));
                }
            }
            outcomes
        })
    }
}

impl Handler<DeleteTopics> for Controller {
    type Result = AtomicResponse<Self, Vec<DeleteTopicOutcome>>;

    fn handle(&mut self, msg: DeleteTopics, _: &mut Self::Context) -> Self::Result {
        self.with_core(move |mut core| {
            Box::pin(async move {
                let out = core.delete_topics(msg).await;
                (core, out)
            })
        })
    }
}

type PartitionOutcomes = Vec<(String, Result<(), ApiError>)>;

/// A broker's answer to a controller request, for whoever waits on it.
type PeerAnswer = tokio::sync::oneshot::Receiver<
    Result<crate::transport::peer::PeerResponse, crate::transport::peer::TransportError>,
>;

impl Handler<Start<CreatePartitions, PartitionOutcomes>> for Controller {
    type Result = AtomicResponse<Self, (PartitionOutcomes, BrokerAcks)>;

    fn handle(
        &mut self,
        msg: Start<CreatePartitions, PartitionOutcomes>,
        _: &mut Self::Context,
    ) -> Self::Result {
        self.with_core(move |mut core| {
            Box::pin(async move {
                let out = core.create_partitions(msg.0).await;
                (core, out)
            })
        })
    }
}

impl Handler<CreatePartitions> for Controller {
    type Result = ResponseFuture<PartitionOutcomes>;

    fn handle(&mut self, msg: CreatePartitions, ctx: &mut Self::Context) -> Self::Result {
        let timeout_ms = msg.timeout_ms;
        let names: Vec<String> = msg.topics.iter().map(|t| t.name.clone()).collect();
        let answer = self.answer_after_acks(ctx, msg, timeout_ms);
        Box::pin(async move {
            let Some((mut outcomes, timed_out)) = answer.await else {
                return names
                    .into_iter()
                    .map(|name| (name, Err(not_controller(-1))))
                    .collect();
            };
            if timed_out {
                for (name, result) in outcomes.iter_mut().filter(|(_, r)| r.is_ok()) {
                    *result = Err(ApiError::with_message(
                        ResponseError::RequestTimedOut,
                        format!("Partitions of '{name}' were created, but not every broker has them yet."),
                    ));
                }
            }
            outcomes
        })
    }
}

impl Handler<AlterEntityConfigs> for Controller {
    type Result = AtomicResponse<Self, Vec<(ConfigEntity, Result<(), ApiError>)>>;

    fn handle(&mut self, msg: AlterEntityConfigs, _: &mut Self::Context) -> Self::Result {
        self.with_core(move |mut core| {
            Box::pin(async move {
                let out = core.alter_configs(msg).await;
                (core, out)
            })
        })
    }
}

impl Controller {
    /// Like [`Self::with_core`], answering `Err(not_controller)` when the core is busy-less
    /// but this broker is not the active controller.
    fn with_core_or<T, F>(
        &mut self,
        err: fn(i32) -> ApiError,
        f: F,
    ) -> AtomicResponse<Self, Result<T, ApiError>>
    where
        T: 'static,
        F: FnOnce(Core) -> BoxFuture<'static, (Core, Result<T, ApiError>)> + 'static,
    {
        match self.core.take() {
            Some(core) if core.active.is_some() => AtomicResponse::new(Box::pin(
                f(core).into_actor(self).map(|(core, out), act, _| {
                    act.core = Some(core);
                    out
                }),
            )),
            Some(core) => {
                let id = core.deps.broker_id;
                self.core = Some(core);
                AtomicResponse::new(Box::pin(fut::ready(Err(err(id)))))
            }
            None => AtomicResponse::new(Box::pin(fut::ready(Err(err(-1))))),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The event logic

fn api_error_of(e: &FencedError) -> ApiError {
    match e {
        FencedError::ControllerMoved => {
            ApiError::with_message(ResponseError::NotController, e.to_string())
        }
        FencedError::Coordination(c) => ApiError::with_message(
            ResponseError::UnknownServerError,
            format!("coordination service: {c}"),
        ),
    }
}

impl Core {
    fn id(&self) -> i32 {
        self.deps.broker_id
    }

    /// Case 1: register (ephemeral `/brokers/ids/<id>`), then stand for election.
    async fn register_and_elect(&mut self) -> anyhow::Result<()> {
        let id = self.id();
        loop {
            match self.zk.register_broker(id, &self.deps.registration).await {
                Ok(epoch) => {
                    self.broker_epoch = epoch;
                    (self.deps.on_registered)(epoch);
                    tracing::info!(
                        broker = id,
                        broker_epoch = epoch,
                        "registered in /brokers/ids"
                    );
                    break;
                }
                Err(CoordinationError::NodeExists { .. }) => {
                    // Our previous session's node lingers until that session expires (a fast
                    // restart): wait for it to go, as Kafka does.
                    tracing::info!(broker = id, "/brokers/ids/{id} still held by a previous session; waiting for it to expire");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.elect().await
    }

    /// Case 1, Step 1.3: try to become the controller; otherwise watch `/controller`.
    async fn elect(&mut self) -> anyhow::Result<()> {
        let id = self.id();
        if let Some(current) = self.zk.get_controller_id(true).await? {
            self.controller_id = current;
            if current != id {
                self.resign();
            }
            return Ok(());
        }
        match self.zk.try_become_controller(id).await? {
            Some((epoch, epoch_version)) => {
                self.controller_id = id;
                // The watch on /controller set above was for its creation; keep one on it.
                self.zk.get_controller_id(true).await?;
                tracing::info!(broker = id, epoch, "elected controller");
                crate::observe::controller::elected(id, epoch);
                self.on_controller_failover(epoch, epoch_version).await?;
            }
            None => {
                self.controller_id = self.zk.get_controller_id(true).await?.unwrap_or(-1);
                tracing::debug!(
                    broker = id,
                    controller = self.controller_id,
                    "another broker is controller"
                );
            }
        }
        Ok(())
    }

    fn resign(&mut self) {
        if self.active.take().is_some() {
            tracing::info!(broker = self.id(), "resigned as controller");
            crate::observe::controller::resigned(self.id());
        }
    }

    /// Kafka's `onControllerFailover`: read the whole cluster, push it to every broker, elect
    /// leaders for partitions whose leader is gone.
    async fn on_controller_failover(
        &mut self,
        epoch: i32,
        epoch_version: i32,
    ) -> anyhow::Result<()> {
        let zk = self.zk.clone();
        let cluster_id = {
            let (data, _) = zk.client.get_data(paths::CLUSTER_ID, false).await?;
            znodes::from_bytes::<znodes::ClusterIdZNode>(paths::CLUSTER_ID, &data)?.id
        };
        let mut ctx = ControllerContext {
            epoch,
            unclean_default: self.deps.config.unclean_leader_election_enable,
            ..Default::default()
        };
        for child in zk.get_children(paths::BROKER_IDS, true).await? {
            let Ok(bid) = child.parse::<i32>() else {
                continue;
            };
            if let Some((registration, broker_epoch)) = zk.get_broker(bid).await? {
                ctx.live_brokers
                    .insert(bid, self.live_broker(bid, &registration, broker_epoch));
            }
        }
        for topic in zk.get_children(paths::BROKER_TOPICS, true).await? {
            self.load_topic(&mut ctx, &topic, epoch_version).await?;
        }
        zk.get_children(paths::CONFIG_CHANGES, true).await?;
        let pending_deletes = zk.get_children(paths::DELETE_TOPICS, true).await?;

        let mut channels = ControllerChannelManager::new(self.deps.peers.clone());
        for id in ctx.live_brokers.keys() {
            channels.add_broker(*id);
        }
        self.active = Some(Active {
            ctx,
            epoch_version,
            channels,
            cluster_id,
        });

        // Tell every broker the whole cluster and its dynamic configs, then every replica its
        // role.
        self.send_update_metadata_full(None);
        let live = self.active_ref().ctx.live_ids();
        self.push_dynamic_broker_configs(&live).await?;
        let all: Vec<(String, i32)> = self.active_ref().ctx.states.keys().cloned().collect();
        self.send_leader_and_isr(&all, &BTreeSet::new(), None);

        // Partitions led by brokers that died while no controller was watching.
        let live = self.active_ref().ctx.live_ids();
        let gone: BTreeSet<i32> = self
            .active_ref()
            .ctx
            .states
            .values()
            .flat_map(|s| s.isr.iter().copied().chain([s.leader]))
            .filter(|id| *id >= 0 && !live.contains(id))
            .collect();
        let mut changes = self.active_ref().ctx.on_brokers_failed(&gone);
        changes.extend(self.active_ref().ctx.elect_offline());
        dedup_changes(&mut changes);
        self.commit_changes(changes, false).await;

        for topic in pending_deletes {
            self.delete_topic_fully(&topic).await;
        }
        // Log dirs that failed while no controller was watching (and the watch).
        self.on_log_dir_event().await?;
        Ok(())
    }

    fn active_ref(&self) -> &Active {
        self.active.as_ref().expect("called only while active")
    }

    fn live_broker(
        &self,
        id: i32,
        registration: &znodes::BrokerRegistration,
        epoch: i64,
    ) -> LiveBroker {
        let inter = self.deps.config.inter_broker_listener_name.clone();
        let endpoints = registration.parsed_endpoints();
        let (host, port) = endpoints
            .iter()
            .find(|(name, _, _)| Some(name) != inter.as_ref())
            .or(endpoints.first())
            .map(|(_, h, p)| (h.clone(), *p))
            .unwrap_or((registration.host.clone(), registration.port as u16));
        LiveBroker {
            endpoint: BrokerEndpoint {
                id,
                host,
                port,
                rack: registration.rack.clone(),
                listeners: endpoints
                    .into_iter()
                    .map(|(listener, host, port)| ListenerEndpoint {
                        listener,
                        host,
                        port,
                    })
                    .collect(),
            },
            epoch,
        }
    }

    /// Reads one topic (assignment, id, configs, partition states) into `ctx`, creating the
    /// state of partitions that have none yet (a topic written by someone else).
    async fn load_topic(
        &self,
        ctx: &mut ControllerContext,
        topic: &str,
        epoch_version: i32,
    ) -> anyhow::Result<()> {
        let zk = &self.zk;
        let Some((znode, stat)) = zk.get_topic(topic, true).await? else {
            return Ok(());
        };
        let assignment = znode.assignment();
        let id = match znode.topic_uuid() {
            Some(id) => id,
            None => {
                // A topic without an id (written by an old tool): give it one, as Kafka does.
                let id = Uuid::new_v4();
                let mut updated = znode.clone();
                updated.topic_id = Some(znodes::encode_topic_id(id));
                let op = Op::SetData {
                    path: paths::topic(topic),
                    data: znodes::to_bytes(&updated),
                    version: Some(stat.version),
                };
                zk.fenced(epoch_version, vec![op]).await?;
                id
            }
        };
        let config = zk.get_topic_config(topic).await?;
        ctx.topics.insert(
            topic.to_string(),
            TopicInfo {
                id,
                assignment: assignment.clone(),
                config,
            },
        );
        let mut missing = BTreeMap::new();
        let reads = zk
            .get_partition_states(topic, assignment.keys().copied())
            .await;
        for ((p, replicas), read) in assignment.iter().zip(reads) {
            match read? {
                Some((state, version)) => {
                    ctx.states
                        .insert((topic.to_string(), *p), leader_isr_of(state, version));
                }
                None => {
                    missing.insert(*p, replicas.clone());
                }
            }
        }
        if !missing.is_empty() {
            if missing.len() == assignment.len() {
                // A topic written by a tool: it may lack the parent too.
                match zk
                    .fenced(epoch_version, vec![partitions_parent_create(topic)])
                    .await
                {
                    Ok(())
                    | Err(FencedError::Coordination(CoordinationError::NodeExists { .. })) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let states = ctx.initial_states(&missing);
            let stored =
                write_new_partition_states(zk, epoch_version, ctx.epoch, topic, states).await?;
            for (p, s) in stored {
                ctx.states.insert((topic.to_string(), p), s);
            }
        }
        Ok(())
    }

    /// Handles one watch event; true when it must be handled again: its reads lost the
    /// connection, so the watch they re-arm was not set (Kafka's ZooKeeper client retries
    /// such requests until the connection is back; a lost `/brokers/ids` watch left the
    /// controller blind to every later broker change).
    async fn on_watch(&mut self, watch: WatchedEvent) -> bool {
        let result = match (watch.event_type, watch.path.as_str()) {
            (_, paths::CONTROLLER) => self.on_controller_change(watch.event_type).await,
            (EventType::NodeChildrenChanged, paths::BROKER_IDS) if self.active.is_some() => {
                self.on_broker_change().await
            }
            (EventType::NodeChildrenChanged, paths::BROKER_TOPICS) if self.active.is_some() => {
                self.on_topic_change().await
            }
            (EventType::NodeChildrenChanged, paths::DELETE_TOPICS) if self.active.is_some() => {
                self.on_delete_topics_change().await
            }
            (EventType::NodeChildrenChanged, paths::CONFIG_CHANGES) if self.active.is_some() => {
                self.on_config_change().await
            }
            (EventType::NodeChildrenChanged, paths::LOG_DIR_EVENT_NOTIFICATION)
                if self.active.is_some() =>
            {
                self.on_log_dir_event().await
            }
            (EventType::NodeDataChanged, path)
                if self.active.is_some() && path.starts_with(paths::BROKER_TOPICS) =>
            {
                self.on_partition_modification(
                    path.trim_start_matches(paths::BROKER_TOPICS)
                        .trim_start_matches('/'),
                )
                .await
            }
            _ => Ok(()),
        };
        match result {
            Ok(()) => false,
            Err(e) => {
                let lost = e.chain().any(|c| {
                    matches!(
                        c.downcast_ref::<CoordinationError>(),
                        Some(CoordinationError::ConnectionLoss)
                    )
                });
                tracing::warn!(broker = self.id(), path = %watch.path, error = %e, retry = lost, "handling a coordination event failed");
                lost
            }
        }
    }

    async fn on_controller_change(&mut self, event: EventType) -> anyhow::Result<()> {
        match event {
            EventType::NodeDeleted => {
                tracing::info!(
                    broker = self.id(),
                    "/controller is gone; standing for election"
                );
                self.resign();
                self.controller_id = -1;
                self.elect().await
            }
            _ => {
                let current = self.zk.get_controller_id(true).await?.unwrap_or(-1);
                self.controller_id = current;
                if current != self.id() {
                    self.resign();
                }
                if current == -1 {
                    self.elect().await?;
                }
                Ok(())
            }
        }
    }

    /// Case 4 (and brokers joining): compare `/brokers/ids` with the live set.
    async fn on_broker_change(&mut self) -> anyhow::Result<()> {
        let ids: BTreeSet<i32> = self
            .zk
            .get_children(paths::BROKER_IDS, true)
            .await?
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect();
        let mut registrations = BTreeMap::new();
        for id in &ids {
            if let Some(r) = self.zk.get_broker(*id).await? {
                registrations.insert(*id, r);
            }
        }
        let active = self.active.as_ref().expect("active");
        let known = active.ctx.live_ids();
        let mut dead: BTreeSet<i32> = known.difference(&ids).copied().collect();
        let mut joined: BTreeSet<i32> = ids.difference(&known).copied().collect();
        // A broker that restarted faster than we noticed: same id, new epoch.
        for (id, (_, epoch)) in &registrations {
            if let Some(live) = active.ctx.live_brokers.get(id) {
                if live.epoch != *epoch {
                    dead.insert(*id);
                    joined.insert(*id);
                }
            }
        }
        if !dead.is_empty() {
            self.on_brokers_failure(&dead).await;
        }
        if !joined.is_empty() {
            let mut new = Vec::new();
            for id in &joined {
                if let Some((registration, epoch)) = registrations.get(id) {
                    new.push(self.live_broker(*id, registration, *epoch));
                }
            }
            self.on_brokers_startup(new).await;
        }
        Ok(())
    }

    async fn on_brokers_failure(&mut self, dead: &BTreeSet<i32>) {
        tracing::info!(controller = self.id(), ?dead, "brokers failed");
        crate::observe::controller::brokers_failed(self.id(), dead);
        let changes = self.active_ref().ctx.on_brokers_failed(dead);
        let active = self.active.as_mut().expect("active");
        for id in dead {
            active.ctx.live_brokers.remove(id);
            active.ctx.offline_replicas.remove(id);
            active.ctx.shutting_down.remove(id);
            active.channels.remove_broker(*id);
        }
        self.commit_changes(changes, false).await;
    }

    async fn on_brokers_startup(&mut self, brokers: Vec<LiveBroker>) {
        let ids: BTreeSet<i32> = brokers.iter().map(|b| b.endpoint.id).collect();
        tracing::info!(controller = self.id(), ?ids, "brokers joined");
        crate::observe::controller::brokers_joined(self.id(), &ids);
        let active = self.active.as_mut().expect("active");
        for b in brokers {
            // A restarted broker recovered its log dirs.
            active.ctx.offline_replicas.remove(&b.endpoint.id);
            active.channels.add_broker(b.endpoint.id);
            active.ctx.live_brokers.insert(b.endpoint.id, b);
        }
        // Case 2: the new brokers get the whole cluster; everyone learns of them.
        self.send_update_metadata_full(None);
        // Their dynamic configs come before their replicas, which start with them.
        if let Err(e) = self.push_dynamic_broker_configs(&ids).await {
            tracing::warn!(controller = self.id(), error = %e, "could not read dynamic broker configs");
        }
        // Tell them their replicas' roles.
        let mut hosted = Vec::new();
        for id in &ids {
            hosted.extend(self.active_ref().ctx.partitions_on(*id));
        }
        self.send_leader_and_isr(&hosted, &BTreeSet::new(), Some(&ids));
        let changes = self.active_ref().ctx.elect_offline();
        self.commit_changes(changes, false).await;
    }

    async fn on_topic_change(&mut self) -> anyhow::Result<()> {
        let topics = self.zk.get_children(paths::BROKER_TOPICS, true).await?;
        let epoch_version = self.active_ref().epoch_version;
        let mut new = Vec::new();
        for topic in topics {
            if self.active_ref().ctx.topics.contains_key(&topic) {
                continue;
            }
            let mut ctx = std::mem::take(&mut self.active.as_mut().expect("active").ctx);
            let loaded = self.load_topic(&mut ctx, &topic, epoch_version).await;
            self.active.as_mut().expect("active").ctx = ctx;
            loaded?;
            new.push(topic);
        }
        if !new.is_empty() {
            // Nobody asked: no one waits for the brokers' answers.
            let _ = self.announce_new_partitions(&new, None);
        }
        Ok(())
    }

    /// An external write to `/brokers/topics/<t>` (partitions added by a tool).
    async fn on_partition_modification(&mut self, topic: &str) -> anyhow::Result<()> {
        if topic.contains('/') || !self.active_ref().ctx.topics.contains_key(topic) {
            return Ok(());
        }
        let Some((znode, _)) = self.zk.get_topic(topic, true).await? else {
            return Ok(());
        };
        let known = self.active_ref().ctx.topics[topic].assignment.clone();
        let added: BTreeMap<i32, Vec<i32>> = znode
            .assignment()
            .into_iter()
            .filter(|(p, _)| !known.contains_key(p))
            .collect();
        if added.is_empty() {
            return Ok(());
        }
        // Nobody asked: no one waits for the brokers' answers.
        self.add_partitions_state(topic, &added)
            .await
            .map(drop)
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    async fn on_delete_topics_change(&mut self) -> anyhow::Result<()> {
        for topic in self.zk.get_children(paths::DELETE_TOPICS, true).await? {
            self.delete_topic_fully(&topic).await;
        }
        Ok(())
    }

    /// A config change notification: re-read the named topics' overrides and push them.
    async fn on_config_change(&mut self) -> anyhow::Result<()> {
        let children = self.zk.get_children(paths::CONFIG_CHANGES, true).await?;
        for child in children {
            let path = format!("{}/{child}", paths::CONFIG_CHANGES);
            let Ok((data, _)) = self.zk.client.get_data(&path, false).await else {
                continue;
            };
            if let Ok(n) = znodes::from_bytes::<znodes::ConfigChangeNotification>(&path, &data) {
                if n.entity_path.starts_with("brokers/") {
                    if let Some(entity) = ConfigEntity::from_entity_path(&n.entity_path) {
                        let configs = self
                            .zk
                            .get_config(&paths::entity_config(&n.entity_path))
                            .await?;
                        self.push_broker_config(entity, configs);
                    }
                } else if let Some(topic) = n.entity_path.strip_prefix("topics/") {
                    let config = self.zk.get_topic_config(topic).await?;
                    let changed = self
                        .active
                        .as_mut()
                        .and_then(|a| a.ctx.topics.get_mut(topic))
                        .map(|t| {
                            let changed = t.config != config;
                            t.config = config.clone();
                            changed
                        })
                        .unwrap_or(false);
                    if changed {
                        self.push_topic_config(topic, config);
                    }
                }
            }
            // Notifications are consumed once applied (Kafka purges them after a while).
            let _ = self.zk.client.delete(&path, None).await;
        }
        Ok(())
    }

    /// Kafka's `LogDirEventNotification` handling: each notification names a broker with a
    /// failed log dir. The controller consumes the notifications, asks each such broker
    /// (LeaderAndIsr for every partition it hosts) which replicas answer
    /// KAFKA_STORAGE_ERROR, and treats those replicas as offline: they leave the ISR and
    /// their leadership moves to another ISR replica.
    async fn on_log_dir_event(&mut self) -> anyhow::Result<()> {
        let children = self
            .zk
            .get_children(paths::LOG_DIR_EVENT_NOTIFICATION, true)
            .await?;
        let mut brokers = BTreeSet::new();
        for child in children {
            let path = format!("{}/{child}", paths::LOG_DIR_EVENT_NOTIFICATION);
            if let Ok((data, _)) = self.zk.client.get_data(&path, false).await {
                match znodes::from_bytes::<znodes::LogDirEventNotification>(&path, &data) {
                    Ok(n) => {
                        brokers.insert(n.broker);
                    }
                    Err(e) => {
                        tracing::warn!(%path, error = %e, "ignoring a malformed log dir event")
                    }
                }
            }
            let _ = self.zk.client.delete(&path, None).await;
        }
        for broker in brokers {
            if !self.active_ref().ctx.live_brokers.contains_key(&broker) {
                continue;
            }
            let hosted = self.active_ref().ctx.partitions_on(broker);
            let answers = self.send_leader_and_isr(
                &hosted,
                &BTreeSet::new(),
                Some(&BTreeSet::from([broker])),
            );
            let mut offline = BTreeSet::new();
            for answer in answers {
                if let Ok(Ok(PeerResponse::LeaderAndIsr(Ok(results)))) = answer.await {
                    offline.extend(
                        results
                            .into_iter()
                            .filter(|(_, e)| {
                                e.as_ref().is_some_and(|e| {
                                    e.code == ResponseError::KafkaStorageError.code()
                                })
                            })
                            .map(|(tp, _)| (tp.topic, tp.partition)),
                    );
                }
            }
            tracing::warn!(
                controller = self.id(),
                broker,
                replicas = offline.len(),
                "replicas on an offline log dir"
            );
            let active = self.active.as_mut().expect("active");
            let known = active.ctx.offline_replicas.entry(broker).or_default();
            known.extend(offline.iter().cloned());
            let changes = self.active_ref().ctx.on_replicas_offline(broker, &offline);
            self.commit_changes(changes, false).await;
        }
        Ok(())
    }

    // ---- writing decisions --------------------------------------------------------------

    /// Writes each change (fenced, conditional on its partition epoch), applies the written
    /// ones, and tells the brokers. Returns the changes that were written.
    async fn commit_changes(
        &mut self,
        changes: Vec<StateChange>,
        is_new: bool,
    ) -> Vec<StateChange> {
        if changes.is_empty() {
            return changes;
        }
        crate::observe::controller::decided(self.id(), &changes, &self.active_ref().ctx.states);
        let epoch_version = self.active_ref().epoch_version;
        let writes = changes
            .iter()
            .map(|change| {
                vec![Op::SetData {
                    path: paths::partition_state(&change.topic, change.partition),
                    data: znodes::to_bytes(&state_znode(&change.state)),
                    version: Some(change.expected_partition_epoch),
                }]
            })
            .collect();
        let outcomes = self.zk.fenced_each(epoch_version, writes).await;
        let mut written = Vec::new();
        let mut failed = 0usize;
        for (change, outcome) in changes.into_iter().zip(outcomes) {
            match outcome {
                Ok(()) => written.push(change),
                Err(FencedError::ControllerMoved) => {
                    // Every later write met the same fence: the epoch only moves on.
                    tracing::warn!(
                        broker = self.id(),
                        "another controller took over; resigning"
                    );
                    self.resign();
                    return written;
                }
                Err(FencedError::Coordination(CoordinationError::BadVersion { .. })) => {
                    // Someone else changed the state: reload it; the next event decides anew.
                    if let Ok(Some((s, v))) = self
                        .zk
                        .get_partition_state(&change.topic, change.partition)
                        .await
                    {
                        let active = self.active.as_mut().expect("active");
                        active.ctx.apply(&StateChange {
                            topic: change.topic.clone(),
                            partition: change.partition,
                            state: leader_isr_of(s, v),
                            expected_partition_epoch: v,
                        });
                    }
                }
                Err(e) => {
                    // A lost session fails every write of the batch: one line says it.
                    if failed == 0 {
                        tracing::warn!(partition = %format!("{}-{}", change.topic, change.partition), error = %e, "writing partition state failed");
                    }
                    failed += 1;
                }
            }
        }
        if failed > 1 {
            tracing::warn!(
                controller = self.id(),
                failed,
                "writing partition states failed"
            );
        }
        let active = self.active.as_mut().expect("active");
        for change in &written {
            active.ctx.apply(change);
        }
        let keys: Vec<(String, i32)> = written
            .iter()
            .map(|c| (c.topic.clone(), c.partition))
            .collect();
        let new: BTreeSet<(String, i32)> = if is_new {
            keys.iter().cloned().collect()
        } else {
            BTreeSet::new()
        };
        self.send_leader_and_isr(&keys, &new, None);
        self.send_update_metadata_partitions(&keys);
        written
    }

    /// LeaderAndIsr for `partitions` to their live replicas (only to `only` when given).
    /// Returns the receivers of the answers.
    fn send_leader_and_isr(
        &self,
        partitions: &[(String, i32)],
        new: &BTreeSet<(String, i32)>,
        only: Option<&BTreeSet<i32>>,
    ) -> Vec<PeerAnswer> {
        let Some(active) = &self.active else {
            return vec![];
        };
        let ctx = &active.ctx;
        let mut per_broker: BTreeMap<i32, Vec<LeaderAndIsrPartitionState>> = BTreeMap::new();
        for (topic, p) in partitions {
            let (Some(info), Some(state)) =
                (ctx.topics.get(topic), ctx.states.get(&(topic.clone(), *p)))
            else {
                continue;
            };
            let Some(replicas) = info.assignment.get(p) else {
                continue;
            };
            for broker in ctx.live_replicas(topic, *p) {
                if only.is_some_and(|o| !o.contains(&broker)) {
                    continue;
                }
                per_broker
                    .entry(broker)
                    .or_default()
                    .push(LeaderAndIsrPartitionState {
                        topic: topic.clone(),
                        topic_id: info.id,
                        partition: *p,
                        leader: state.leader,
                        leader_epoch: state.leader_epoch,
                        isr: state.isr.clone(),
                        replicas: replicas.clone(),
                        partition_epoch: state.partition_epoch,
                        is_new: new.contains(&(topic.clone(), *p)),
                    });
            }
        }
        per_broker
            .into_iter()
            .map(|(broker, partition_states)| {
                let leaders: BTreeSet<i32> = partition_states.iter().map(|s| s.leader).collect();
                let live_leaders = leaders
                    .iter()
                    .filter_map(|l| ctx.live_brokers.get(l).map(|b| b.endpoint.clone()))
                    .collect();
                active.channels.send(
                    broker,
                    PeerRequest::LeaderAndIsr(LeaderAndIsr {
                        controller_id: self.id(),
                        controller_epoch: ctx.epoch,
                        partition_states,
                        live_leaders,
                    }),
                )
            })
            .collect()
    }

    fn update_metadata(
        &self,
        kind: UpdateMetadataKind,
        topics: Vec<UpdateMetadataTopicState>,
    ) -> UpdateMetadata {
        let active = self.active_ref();
        UpdateMetadata {
            controller_id: self.id(),
            controller_epoch: active.ctx.epoch,
            kind,
            cluster_id: active.cluster_id.clone(),
            live_brokers: active
                .ctx
                .live_brokers
                .values()
                .map(|b| b.endpoint.clone())
                .collect(),
            topic_states: topics,
        }
    }

    fn topic_state(
        &self,
        topic: &str,
        partitions: impl Iterator<Item = i32>,
    ) -> Option<UpdateMetadataTopicState> {
        let ctx = &self.active_ref().ctx;
        let info = ctx.topics.get(topic)?;
        Some(UpdateMetadataTopicState {
            name: topic.to_string(),
            topic_id: info.id,
            partitions: partitions
                .filter_map(|p| ctx.partition_metadata(topic, p))
                .collect(),
        })
    }

    /// Case 2: the full snapshot to every live broker (or `only` those).
    fn send_update_metadata_full(&self, only: Option<&BTreeSet<i32>>) -> Vec<PeerAnswer> {
        let Some(active) = &self.active else {
            return vec![];
        };
        let topics: Vec<UpdateMetadataTopicState> = active
            .ctx
            .topics
            .iter()
            .filter(|(name, _)| !active.ctx.deleting.contains(*name))
            .filter_map(|(name, info)| self.topic_state(name, info.assignment.keys().copied()))
            .collect();
        let msg = self.update_metadata(UpdateMetadataKind::Full, topics);
        active
            .ctx
            .live_brokers
            .keys()
            .filter(|b| only.is_none_or(|o| o.contains(b)))
            .map(|b| {
                active
                    .channels
                    .send(*b, PeerRequest::UpdateMetadata(msg.clone()))
            })
            .collect()
    }

    /// The changed partitions to every live broker.
    fn send_update_metadata_partitions(&self, partitions: &[(String, i32)]) -> Vec<PeerAnswer> {
        let Some(active) = &self.active else {
            return vec![];
        };
        let mut by_topic: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
        for (t, p) in partitions {
            by_topic.entry(t).or_default().insert(*p);
        }
        let topics = by_topic
            .into_iter()
            .filter_map(|(t, ps)| self.topic_state(t, ps.into_iter()))
            .collect();
        let msg = self.update_metadata(UpdateMetadataKind::Incremental, topics);
        active
            .ctx
            .live_brokers
            .keys()
            .map(|b| {
                active
                    .channels
                    .send(*b, PeerRequest::UpdateMetadata(msg.clone()))
            })
            .collect()
    }

    /// Sends each of `brokers` the cluster-wide dynamic default and its own dynamic configs
    /// (where there are any).
    async fn push_dynamic_broker_configs(&self, brokers: &BTreeSet<i32>) -> anyhow::Result<()> {
        let Some(active) = &self.active else {
            return Ok(());
        };
        let default = ConfigEntity::BrokerDefault;
        let defaults = self
            .zk
            .get_config(&paths::entity_config(&default.entity_path()))
            .await?;
        for id in brokers {
            let entity = ConfigEntity::Broker(*id);
            let own = self
                .zk
                .get_config(&paths::entity_config(&entity.entity_path()))
                .await?;
            for (entity, configs) in [(default.clone(), &defaults), (entity, &own)] {
                if !configs.is_empty() {
                    // Not awaited: the broker applies it before the LeaderAndIsr that follows
                    // on the same channel.
                    drop(active.channels.send(
                        *id,
                        PeerRequest::BrokerConfigChanged(BrokerConfigChanged {
                            entity,
                            configs: configs.clone(),
                        }),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Tells every live broker the dynamic configs `entity` now has.
    fn push_broker_config(
        &self,
        entity: ConfigEntity,
        configs: BTreeMap<String, String>,
    ) -> Vec<PeerAnswer> {
        self.send_to_live_brokers(|| {
            PeerRequest::BrokerConfigChanged(BrokerConfigChanged {
                entity: entity.clone(),
                configs: configs.clone(),
            })
        })
    }

    fn push_topic_config(&self, topic: &str, config: BTreeMap<String, String>) -> Vec<PeerAnswer> {
        self.send_to_live_brokers(|| {
            PeerRequest::TopicConfigChanged(TopicConfigChanged {
                topic: topic.to_string(),
                overrides: config.clone(),
            })
        })
    }

    /// Sends `request()` to every live broker; the answers are for whoever waits on them.
    fn send_to_live_brokers(&self, request: impl Fn() -> PeerRequest) -> Vec<PeerAnswer> {
        let Some(active) = &self.active else {
            return vec![];
        };
        active
            .ctx
            .live_brokers
            .keys()
            .map(|b| active.channels.send(*b, request()))
            .collect()
    }

    /// New partitions (of new or grown topics) go live: LeaderAndIsr to their replicas, then
    /// UpdateMetadata everywhere. Waits (bounded) for the brokers' answers so an admin's
    /// response means the topic is usable.
    /// Sends the LeaderAndIsr and UpdateMetadata that make new partitions live; the brokers'
    /// answers are for whoever waits for them, outside the controller (see [`BrokerAcks`]).
    fn announce_new_partitions(
        &mut self,
        topics: &[String],
        added: Option<&BTreeMap<String, BTreeSet<i32>>>,
    ) -> BrokerAcks {
        let keys: Vec<(String, i32)> = {
            let ctx = &self.active_ref().ctx;
            topics
                .iter()
                .flat_map(|t| {
                    let parts: Vec<i32> = match added.and_then(|a| a.get(t)) {
                        Some(ps) => ps.iter().copied().collect(),
                        None => ctx
                            .topics
                            .get(t)
                            .map(|i| i.assignment.keys().copied().collect())
                            .unwrap_or_default(),
                    };
                    parts.into_iter().map(move |p| (t.clone(), p))
                })
                .collect()
        };
        let new: BTreeSet<(String, i32)> = keys.iter().cloned().collect();
        let mut waits = self.send_leader_and_isr(&keys, &new, None);
        waits.extend(self.send_update_metadata_partitions(&keys));
        BrokerAcks(waits)
    }

    // ---- admin --------------------------------------------------------------------------

    fn placement_brokers(&self) -> Vec<PlacementBroker> {
        let ctx = &self.active_ref().ctx;
        ctx.live_brokers
            .values()
            .filter(|b| !ctx.shutting_down.contains(&b.endpoint.id))
            .map(|b| PlacementBroker {
                id: b.endpoint.id,
                rack: b.endpoint.rack.clone(),
            })
            .collect()
    }

    async fn create_topics(&mut self, msg: CreateTopics) -> (Vec<CreateTopicOutcome>, BrokerAcks) {
        let id = self.id();
        if self.active.is_none() {
            let outcomes = msg
                .topics
                .into_iter()
                .map(|t| CreateTopicOutcome {
                    name: t.name,
                    result: Err(not_controller(id)),
                })
                .collect();
            return (outcomes, BrokerAcks::default());
        }
        let config = self.deps.config.clone();
        let mut outcomes = Vec::new();
        let mut created = Vec::new();
        let mut seen = BTreeSet::new();
        for topic in &msg.topics {
            let duplicate = msg.topics.iter().filter(|t| t.name == topic.name).count() > 1;
            if duplicate {
                if seen.insert(topic.name.clone()) {
                    outcomes.push(CreateTopicOutcome {
                        name: topic.name.clone(),
                        result: Err(ApiError::with_message(
                            ResponseError::InvalidRequest,
                            format!("Create topics request from client contains multiple entries for the following topic: {}", topic.name),
                        )),
                    });
                }
                continue;
            }
            let result = self.create_topic(topic, &config, msg.validate_only).await;
            if result.is_ok() && !msg.validate_only {
                created.push(topic.name.clone());
            }
            outcomes.push(CreateTopicOutcome {
                name: topic.name.clone(),
                result,
            });
        }
        let acks = if created.is_empty() {
            BrokerAcks::default()
        } else {
            self.announce_new_partitions(&created, None)
        };
        (outcomes, acks)
    }

    async fn create_topic(
        &mut self,
        topic: &crate::actors::controller::messages::NewTopic,
        config: &BrokerConfig,
        validate_only: bool,
    ) -> Result<CreatedTopic, ApiError> {
        validate_topic_name(&topic.name).map_err(|e| {
            ApiError::with_message(ResponseError::InvalidTopicException, e.to_string())
        })?;
        if self.active_ref().ctx.topics.contains_key(&topic.name) {
            return Err(ApiError::with_message(
                ResponseError::TopicAlreadyExists,
                format!("Topic '{}' already exists.", topic.name),
            ));
        }
        let mut overrides: BTreeMap<String, String> = topic
            .configs
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        let mut effective = config
            .topic_defaults()
            .with_overrides(overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| ApiError::with_message(ResponseError::InvalidConfig, e.to_string()))?;
        let assignment: BTreeMap<i32, Vec<i32>> = if !topic.assignments.is_empty() {
            if topic.num_partitions != -1 || topic.replication_factor != -1 {
                return Err(ApiError::with_message(
                    ResponseError::InvalidRequest,
                    "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
                ));
            }
            let assignment: BTreeMap<i32, Vec<i32>> = topic.assignments.iter().cloned().collect();
            self.check_assignment(&assignment, 0)?;
            assignment
        } else {
            let partitions = if topic.num_partitions == -1 {
                config.num_partitions
            } else {
                topic.num_partitions
            };
            let rf = if topic.replication_factor == -1 {
                config.default_replication_factor as i32
            } else {
                topic.replication_factor as i32
            };
            if partitions <= 0 {
                return Err(ApiError::with_message(
                    ResponseError::InvalidPartitions,
                    "Number of partitions must be larger than 0.",
                ));
            }
            placement::assign_replicas(&self.placement_brokers(), partitions, rf, 0, None).map_err(
                |e| {
                    let code = match e {
                        placement::PlacementError::NoPartitions(_) => {
                            ResponseError::InvalidPartitions
                        }
                        _ => ResponseError::InvalidReplicationFactor,
                    };
                    ApiError::with_message(code, e.to_string())
                },
            )?
        };
        let rf = assignment.values().next().map(|r| r.len()).unwrap_or(0) as i16;
        // `weir cluster`'s safe default of min.insync.replicas=2 would make acks=all
        // impossible on a topic with fewer replicas; such a topic records its replica count
        // instead (a value the user set, on the broker or the topic, is kept as Kafka keeps it).
        let fewest = assignment.values().map(Vec::len).min().unwrap_or(0) as i32;
        if config.min_insync_replicas_capped_by_replication_factor
            && !overrides.contains_key("min.insync.replicas")
            && fewest >= 1
            && fewest < effective.min_insync_replicas
        {
            overrides.insert("min.insync.replicas".to_string(), fewest.to_string());
            effective.min_insync_replicas = fewest;
        }
        let id = Uuid::new_v4();
        let created = CreatedTopic {
            topic_id: id,
            num_partitions: assignment.len() as i32,
            replication_factor: rf,
            configs: effective
                .entries_against(&TopicConfig::default())
                .into_iter()
                .map(|e| (e.name.to_string(), e.value))
                .collect(),
        };
        if validate_only {
            return Ok(created);
        }
        let epoch_version = self.active_ref().epoch_version;
        let states = self.active_ref().ctx.initial_states(&assignment);
        crate::observe::controller::placed(self.id(), &topic.name, &assignment);
        let mut ops = Vec::new();
        if !overrides.is_empty() {
            ops.extend(
                self.zk
                    .topic_config_ops(&topic.name, &overrides)
                    .await
                    .map_err(|e| coord_error(&e))?,
            );
        }
        ops.push(Op::Create {
            path: paths::topic(&topic.name),
            data: znodes::to_bytes(&znodes::TopicZNode::new(&assignment, id)),
            mode: CreateMode::Persistent,
        });
        ops.push(partitions_parent_create(&topic.name));
        match self.zk.fenced(epoch_version, ops).await {
            Ok(()) => {}
            Err(FencedError::Coordination(CoordinationError::NodeExists { .. })) => {
                return Err(ApiError::with_message(
                    ResponseError::TopicAlreadyExists,
                    format!("Topic '{}' already exists.", topic.name),
                ))
            }
            Err(e) => {
                if e == FencedError::ControllerMoved {
                    self.resign();
                }
                return Err(api_error_of(&e));
            }
        }
        // The topic exists from here on. Its partitions' states follow; should that fail
        // midway, the topic is left out of this controller's context, so the `/brokers/topics`
        // watch loads it and creates what is missing (as a newly elected controller would).
        let controller_epoch = self.active_ref().ctx.epoch;
        let states = match write_new_partition_states(
            &self.zk,
            epoch_version,
            controller_epoch,
            &topic.name,
            states,
        )
        .await
        {
            Ok(states) => states,
            Err(e) => {
                if e == FencedError::ControllerMoved {
                    self.resign();
                }
                return Err(api_error_of(&e));
            }
        };
        let active = self.active.as_mut().expect("active");
        active.ctx.topics.insert(
            topic.name.clone(),
            TopicInfo {
                id,
                assignment,
                config: overrides.clone(),
            },
        );
        for (p, s) in states {
            active.ctx.states.insert((topic.name.clone(), p), s);
        }
        if !overrides.is_empty() {
            self.push_topic_config(&topic.name, overrides);
        }
        tracing::info!(controller = self.id(), topic = %topic.name, partitions = created.num_partitions, rf, "created topic");
        Ok(created)
    }

    /// An explicit assignment: consecutive partitions from `first`, equal non-empty replica
    /// lists of distinct live brokers.
    fn check_assignment(
        &self,
        assignment: &BTreeMap<i32, Vec<i32>>,
        first: i32,
    ) -> Result<(), ApiError> {
        let invalid =
            |m: String| ApiError::with_message(ResponseError::InvalidReplicaAssignment, m);
        let live = self.active_ref().ctx.live_ids();
        let rf = assignment.values().next().map(|r| r.len()).unwrap_or(0);
        for (i, (p, replicas)) in assignment.iter().enumerate() {
            if *p != first + i as i32 {
                return Err(invalid(
                    "Partitions should be a consecutive 0-based integer sequence".into(),
                ));
            }
            if replicas.is_empty() || replicas.len() != rf {
                return Err(invalid(
                    "All partitions should have the same number of replicas".into(),
                ));
            }
            let distinct: BTreeSet<_> = replicas.iter().collect();
            if distinct.len() != replicas.len() {
                return Err(invalid(format!(
                    "Duplicate brokers not allowed in replica assignment: {replicas:?}"
                )));
            }
            if let Some(b) = replicas.iter().find(|b| !live.contains(b)) {
                return Err(invalid(format!("Unknown broker {b} in replica assignment")));
            }
        }
        Ok(())
    }

    async fn create_partitions(
        &mut self,
        msg: CreatePartitions,
    ) -> (Vec<(String, Result<(), ApiError>)>, BrokerAcks) {
        let id = self.id();
        let mut outcomes = Vec::new();
        let mut acks = BrokerAcks::default();
        for request in msg.topics {
            if self.active.is_none() {
                outcomes.push((request.name, Err(not_controller(id))));
                continue;
            }
            let result = self
                .create_partitions_for(&request, msg.validate_only)
                .await
                .map(|more| acks.0.extend(more.0));
            outcomes.push((request.name, result));
        }
        (outcomes, acks)
    }

    async fn create_partitions_for(
        &mut self,
        request: &crate::actors::controller::messages::NewPartitions,
        validate_only: bool,
    ) -> Result<BrokerAcks, ApiError> {
        let Some(info) = self.active_ref().ctx.topics.get(&request.name).cloned() else {
            return Err(ApiError::with_message(
                ResponseError::UnknownTopicOrPartition,
                format!("The topic '{}' does not exist.", request.name),
            ));
        };
        if self.active_ref().ctx.deleting.contains(&request.name) {
            return Err(ApiError::with_message(
                ResponseError::InvalidTopicException,
                format!("The topic '{}' is queued for deletion.", request.name),
            ));
        }
        let current = info.assignment.len() as i32;
        if request.count <= current {
            return Err(ApiError::with_message(
                ResponseError::InvalidPartitions,
                format!("Topic currently has {current} partitions, which is higher than the requested {}.", request.count),
            ));
        }
        let adding = request.count - current;
        let added: BTreeMap<i32, Vec<i32>> = match &request.assignments {
            Some(lists) => {
                if lists.len() as i32 != adding {
                    return Err(ApiError::with_message(
                        ResponseError::InvalidReplicaAssignment,
                        format!("Increasing the number of partitions by {adding} but {} assignments provided.", lists.len()),
                    ));
                }
                let a = lists
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (current + i as i32, r.clone()))
                    .collect();
                self.check_assignment(&a, current)?;
                a
            }
            None => {
                let rf = info
                    .assignment
                    .values()
                    .next()
                    .map(|r| r.len())
                    .unwrap_or(1) as i32;
                let brokers = self.placement_brokers();
                let start = info
                    .assignment
                    .get(&0)
                    .and_then(|r| placement::continuation_start(&brokers, r));
                placement::assign_replicas(&brokers, adding, rf, current, start).map_err(|e| {
                    ApiError::with_message(ResponseError::InvalidReplicationFactor, e.to_string())
                })?
            }
        };
        if validate_only {
            return Ok(BrokerAcks::default());
        }
        let mut assignment = info.assignment.clone();
        assignment.extend(added.clone());
        let stat = self
            .zk
            .get_topic(&request.name, false)
            .await
            .map_err(|e| coord_error(&e))?;
        let version = stat.map(|(_, s)| s.version);
        let ops = vec![Op::SetData {
            path: paths::topic(&request.name),
            data: znodes::to_bytes(&znodes::TopicZNode::new(&assignment, info.id)),
            version,
        }];
        let epoch_version = self.active_ref().epoch_version;
        self.zk
            .fenced(epoch_version, ops)
            .await
            .map_err(|e| api_error_of(&e))?;
        self.add_partitions_state(&request.name, &added).await
    }

    /// Creates the state of added partitions and announces them.
    async fn add_partitions_state(
        &mut self,
        topic: &str,
        added: &BTreeMap<i32, Vec<i32>>,
    ) -> Result<BrokerAcks, ApiError> {
        let states = self.active_ref().ctx.initial_states(added);
        let epoch_version = self.active_ref().epoch_version;
        let controller_epoch = self.active_ref().ctx.epoch;
        let states =
            write_new_partition_states(&self.zk, epoch_version, controller_epoch, topic, states)
                .await
                .map_err(|e| {
                    if e == FencedError::ControllerMoved {
                        self.resign();
                    }
                    api_error_of(&e)
                })?;
        let active = self.active.as_mut().expect("active");
        if let Some(info) = active.ctx.topics.get_mut(topic) {
            info.assignment.extend(added.clone());
        }
        for (p, s) in states {
            active.ctx.states.insert((topic.to_string(), p), s);
        }
        let partitions: BTreeMap<String, BTreeSet<i32>> =
            [(topic.to_string(), added.keys().copied().collect())]
                .into_iter()
                .collect();
        Ok(self.announce_new_partitions(&[topic.to_string()], Some(&partitions)))
    }

    async fn delete_topics(&mut self, msg: DeleteTopics) -> Vec<DeleteTopicOutcome> {
        let id = self.id();
        let mut outcomes = Vec::new();
        for topic in msg.topics {
            let (name, topic_id) = match (&topic, &self.active) {
                (_, None) => {
                    outcomes.push(DeleteTopicOutcome {
                        name: match &topic {
                            TopicRef::Name(n) => Some(n.clone()),
                            TopicRef::Id(_) => None,
                        },
                        topic_id: Uuid::nil(),
                        error: Some(not_controller(id)),
                    });
                    continue;
                }
                (TopicRef::Name(n), Some(a)) => {
                    (Some(n.clone()), a.ctx.topics.get(n).map(|t| t.id))
                }
                (TopicRef::Id(tid), Some(a)) => (
                    a.ctx
                        .topics
                        .iter()
                        .find(|(_, t)| t.id == *tid)
                        .map(|(n, _)| n.clone()),
                    Some(*tid),
                ),
            };
            let Some(name_found) = name
                .clone()
                .filter(|n| self.active_ref().ctx.topics.contains_key(n))
            else {
                let error = match topic {
                    TopicRef::Name(_) => ApiError::new(ResponseError::UnknownTopicOrPartition),
                    TopicRef::Id(_) => ApiError::new(ResponseError::UnknownTopicId),
                };
                outcomes.push(DeleteTopicOutcome {
                    name,
                    topic_id: topic_id.unwrap_or(Uuid::nil()),
                    error: Some(error),
                });
                continue;
            };
            if !self.deps.config.delete_topic_enable {
                outcomes.push(DeleteTopicOutcome {
                    name,
                    topic_id: topic_id.unwrap_or(Uuid::nil()),
                    error: Some(ApiError::with_message(
                        ResponseError::TopicDeletionDisabled,
                        "Topic deletion is disabled.",
                    )),
                });
                continue;
            }
            self.delete_topic_fully(&name_found).await;
            outcomes.push(DeleteTopicOutcome {
                name,
                topic_id: topic_id.unwrap_or(Uuid::nil()),
                error: None,
            });
        }
        outcomes
    }

    /// Kafka's topic deletion: stop and delete the replicas, drop the partitions from every
    /// broker's metadata, then remove the znodes.
    async fn delete_topic_fully(&mut self, topic: &str) {
        let id = self.id();
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let Some(info) = active.ctx.topics.get(topic).cloned() else {
            let _ = self.zk.delete_recursive(&paths::delete_topic(topic)).await;
            return;
        };
        active.ctx.deleting.insert(topic.to_string());
        let epoch = active.ctx.epoch;
        let mut waits = Vec::new();
        let mut per_broker: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        for (p, replicas) in &info.assignment {
            for r in replicas {
                if active.ctx.live_brokers.contains_key(r) {
                    per_broker.entry(*r).or_default().push(TopicPartition {
                        topic: topic.to_string(),
                        partition: *p,
                    });
                }
            }
        }
        for (broker, partitions) in per_broker {
            waits.push(active.channels.send(
                broker,
                PeerRequest::StopReplica(StopReplica {
                    controller_id: id,
                    controller_epoch: epoch,
                    partitions,
                    delete: true,
                }),
            ));
        }
        let gone = UpdateMetadataTopicState {
            name: topic.to_string(),
            topic_id: info.id,
            partitions: info
                .assignment
                .iter()
                .map(
                    |(p, replicas)| crate::actors::metadata_cache::PartitionMetadata {
                        partition: *p,
                        leader: LEADER_DURING_DELETE,
                        leader_epoch: 0,
                        replicas: replicas.clone(),
                        isr: vec![],
                        offline_replicas: vec![],
                        partition_epoch: 0,
                    },
                )
                .collect(),
        };
        let msg = self.update_metadata(UpdateMetadataKind::Incremental, vec![gone]);
        let active = self.active.as_ref().expect("active");
        for b in active.ctx.live_brokers.keys() {
            waits.push(
                active
                    .channels
                    .send(*b, PeerRequest::UpdateMetadata(msg.clone())),
            );
        }
        self.wait_for_brokers(waits).await;
        for path in [
            paths::topic(topic),
            paths::topic_config(topic),
            paths::delete_topic(topic),
        ] {
            if let Err(e) = self.zk.delete_recursive(&path).await {
                tracing::warn!(topic, path, error = %e, "removing a deleted topic's znode failed");
            }
        }
        let active = self.active.as_mut().expect("active");
        active.ctx.topics.remove(topic);
        active.ctx.states.retain(|(t, _), _| t != topic);
        active.ctx.deleting.remove(topic);
        tracing::info!(controller = id, topic, "deleted topic");
    }

    async fn alter_configs(
        &mut self,
        msg: AlterEntityConfigs,
    ) -> Vec<(ConfigEntity, Result<(), ApiError>)> {
        let id = self.id();
        let mut outcomes = Vec::new();
        for (entity, change) in msg.changes {
            let result = match (&self.active, &entity) {
                (None, _) => Err(not_controller(id)),
                (Some(a), ConfigEntity::Topic(topic)) if !a.ctx.topics.contains_key(topic) => {
                    Err(ApiError::with_message(
                        ResponseError::UnknownTopicOrPartition,
                        format!("The topic '{topic}' does not exist."),
                    ))
                }
                (Some(_), ConfigEntity::Topic(topic)) => {
                    self.alter_topic_config(topic, change, msg.validate_only)
                        .await
                }
                (Some(_), _) => {
                    self.alter_broker_config(&entity, change, msg.validate_only)
                        .await
                }
            };
            outcomes.push((entity, result));
        }
        outcomes
    }

    /// KIP-226: validates an entity's new dynamic broker configs as Kafka's
    /// `DynamicBrokerConfig.validateConfigs` does, records them at `/config/brokers/<entity>`
    /// with a change notification, and tells every broker.
    async fn alter_broker_config(
        &mut self,
        entity: &ConfigEntity,
        change: ConfigChange,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let path = paths::entity_config(&entity.entity_path());
        let current = self
            .zk
            .get_config(&path)
            .await
            .map_err(|e| coord_error(&e))?;
        let kafka_default = BrokerConfig::default();
        let next = apply_config_change(&current, change, |key| {
            dynamic::is_list(key).then(|| kafka_default.get(key).unwrap_or_default())
        })?;
        let per_broker = matches!(entity, ConfigEntity::Broker(_));
        dynamic::validate(&next, per_broker, &self.deps.config).map_err(|e| {
            let name = match entity {
                ConfigEntity::Broker(id) => id.to_string(),
                _ => String::new(),
            };
            ApiError::with_message(
                ResponseError::InvalidRequest,
                format!("Invalid config value for resource ConfigResource(type=BROKER, name='{name}'): {e}"),
            )
        })?;
        if validate_only || next == current {
            return Ok(());
        }
        self.record_config(entity, &next).await?;
        tracing::info!(controller = self.id(), %entity, ?next, "dynamic broker configs changed");
        let waits = self.push_broker_config(entity.clone(), next);
        self.wait_for_brokers(waits).await;
        Ok(())
    }

    /// Writes `entity`'s overrides with a change notification, fenced by the controller epoch.
    async fn record_config(
        &mut self,
        entity: &ConfigEntity,
        config: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        let mut ops = self
            .zk
            .config_ops(paths::entity_config(&entity.entity_path()), config)
            .await
            .map_err(|e| coord_error(&e))?;
        ops.push(Op::Create {
            path: paths::CONFIG_CHANGE_PREFIX.to_string(),
            data: znodes::to_bytes(&znodes::ConfigChangeNotification::entity(
                entity.entity_path(),
            )),
            mode: CreateMode::PersistentSequential,
        });
        let epoch_version = self.active_ref().epoch_version;
        self.zk
            .fenced(epoch_version, ops)
            .await
            .map_err(|e| api_error_of(&e))
    }

    /// Waits for the brokers' answers, at most `controller.socket.timeout.ms`.
    async fn wait_for_brokers(&self, waits: Vec<PeerAnswer>) {
        let timeout =
            Duration::from_millis(self.deps.config.controller_socket_timeout_ms.max(1000) as u64);
        let _ = tokio::time::timeout(timeout, futures::future::join_all(waits)).await;
    }

    async fn alter_topic_config(
        &mut self,
        topic: &str,
        change: ConfigChange,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let current = self.active_ref().ctx.topics[topic].config.clone();
        // cleanup.policy is the only list-valued topic config; without an override Kafka
        // starts from its default (`delete`), not from an empty list.
        let next = apply_config_change(&current, change, |key| {
            (key == "cleanup.policy").then(|| "delete".to_string())
        })?;
        self.deps
            .config
            .topic_defaults()
            .with_overrides(next.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| ApiError::with_message(ResponseError::InvalidConfig, e.to_string()))?;
        if validate_only || next == current {
            return Ok(());
        }
        self.record_config(&ConfigEntity::Topic(topic.to_string()), &next)
            .await?;
        if let Some(info) = self
            .active
            .as_mut()
            .and_then(|a| a.ctx.topics.get_mut(topic))
        {
            info.config = next.clone();
        }
        let waits = self.push_topic_config(topic, next);
        self.wait_for_brokers(waits).await;
        Ok(())
    }

    async fn alter_partition(&mut self, msg: AlterPartition) -> AlterPartitionResult {
        let live = self
            .active_ref()
            .ctx
            .live_brokers
            .get(&msg.broker_id)
            .map(|b| b.epoch);
        if live != Some(msg.broker_epoch) {
            return Err(ApiError::with_message(
                ResponseError::StaleBrokerEpoch,
                format!(
                    "broker {} epoch {} is not the registered one",
                    msg.broker_id, msg.broker_epoch
                ),
            ));
        }
        let mut results = Vec::new();
        let mut accepted = Vec::new();
        for item in msg.partitions {
            let tp = TopicPartition {
                topic: item.topic.clone(),
                partition: item.partition,
            };
            match self.active_ref().ctx.alter_partition(
                &item.topic,
                item.partition,
                msg.broker_id,
                item.leader_epoch,
                item.partition_epoch,
                &item.new_isr,
            ) {
                Ok(change) => accepted.push((tp, change)),
                Err(e) => results.push((
                    tp,
                    Err(ApiError::from_code(e.kafka_code(), Some(e.to_string()))),
                )),
            }
        }
        let changes: Vec<StateChange> = accepted.iter().map(|(_, c)| c.clone()).collect();
        let written = self.commit_changes(changes, false).await;
        for (tp, change) in accepted {
            let ok = written
                .iter()
                .find(|w| w.topic == tp.topic && w.partition == tp.partition);
            results.push((
                tp,
                match ok {
                    Some(w) => Ok(PartitionLeadership {
                        leader: w.state.leader,
                        leader_epoch: w.state.leader_epoch,
                        isr: w.state.isr.clone(),
                        partition_epoch: w.state.partition_epoch,
                    }),
                    None => Err(ApiError::with_message(
                        ResponseError::InvalidUpdateVersion,
                        format!(
                            "partition state of {}-{} changed meanwhile",
                            change.topic, change.partition
                        ),
                    )),
                },
            ));
        }
        Ok(results)
    }

    async fn controlled_shutdown(&mut self, msg: ControlledShutdown) -> ControlledShutdownResult {
        let live = self
            .active_ref()
            .ctx
            .live_brokers
            .get(&msg.broker_id)
            .map(|b| b.epoch);
        if live != Some(msg.broker_epoch) {
            return Err(ApiError::with_message(
                ResponseError::StaleBrokerEpoch,
                format!(
                    "broker {} epoch {} is not the registered one",
                    msg.broker_id, msg.broker_epoch
                ),
            ));
        }
        tracing::info!(
            controller = self.id(),
            broker = msg.broker_id,
            "controlled shutdown"
        );
        let changes = self.active_ref().ctx.controlled_shutdown(msg.broker_id);
        self.active
            .as_mut()
            .expect("active")
            .ctx
            .shutting_down
            .insert(msg.broker_id);
        self.commit_changes(changes, false).await;
        // As Kafka's controller answers: the replicated partitions the broker still leads (a
        // partition with one replica has nowhere to go, so waiting for it would not help).
        let ctx = &self.active_ref().ctx;
        Ok(ctx
            .states
            .iter()
            .filter(|(_, s)| s.leader == msg.broker_id)
            .filter(|((t, p), _)| {
                ctx.topics
                    .get(t)
                    .and_then(|info| info.assignment.get(p))
                    .is_some_and(|replicas| replicas.len() > 1)
            })
            .map(|((t, p), _)| TopicPartition {
                topic: t.clone(),
                partition: *p,
            })
            .collect())
    }

    async fn elect_leaders(&mut self, msg: ElectLeaders) -> ElectLeadersResult {
        let wanted: Option<BTreeSet<(String, i32)>> = msg.partitions.as_ref().map(|ps| {
            ps.iter()
                .map(|tp| (tp.topic.clone(), tp.partition))
                .collect()
        });
        let changes = match msg.election {
            ElectionType::Preferred => self.active_ref().ctx.preferred_elections(wanted.as_ref()),
            ElectionType::Unclean => {
                let mut ctx = self.active_ref().ctx.clone();
                ctx.unclean_default = true;
                for info in ctx.topics.values_mut() {
                    info.config
                        .insert("unclean.leader.election.enable".into(), "true".into());
                }
                ctx.elect_offline()
                    .into_iter()
                    .filter(|c| {
                        wanted
                            .as_ref()
                            .is_none_or(|w| w.contains(&(c.topic.clone(), c.partition)))
                    })
                    .collect()
            }
        };
        let written = self.commit_changes(changes, false).await;
        let ctx = &self.active_ref().ctx;
        let targets: Vec<(String, i32)> = match wanted {
            Some(w) => w.into_iter().collect(),
            None => written
                .iter()
                .map(|c| (c.topic.clone(), c.partition))
                .collect(),
        };
        Ok(targets
            .into_iter()
            .map(|(t, p)| {
                let tp = TopicPartition {
                    topic: t.clone(),
                    partition: p,
                };
                let result = if written.iter().any(|c| c.topic == t && c.partition == p) {
                    Ok(())
                } else if !ctx.states.contains_key(&(t.clone(), p)) {
                    Err(ApiError::new(ResponseError::UnknownTopicOrPartition))
                } else {
                    let preferred_leads = ctx.topics[&t]
                        .assignment
                        .get(&p)
                        .and_then(|r| r.first())
                        .copied()
                        == ctx.states.get(&(t.clone(), p)).map(|s| s.leader);
                    if msg.election == ElectionType::Preferred && preferred_leads {
                        Err(ApiError::new(ResponseError::ElectionNotNeeded))
                    } else {
                        Err(ApiError::new(ResponseError::EligibleLeadersNotAvailable))
                    }
                };
                (tp, result)
            })
            .collect())
    }
}

fn coord_error(e: &CoordinationError) -> ApiError {
    ApiError::with_message(
        ResponseError::UnknownServerError,
        format!("coordination service: {e}"),
    )
}

fn state_znode(s: &LeaderIsr) -> znodes::PartitionStateZNode {
    znodes::PartitionStateZNode::new(s.controller_epoch, s.leader, s.leader_epoch, s.isr.clone())
}

/// The op creating `/brokers/topics/<t>/partitions`, the parent of every partition's node.
fn partitions_parent_create(topic: &str) -> Op {
    Op::Create {
        path: paths::topic_partitions(topic),
        data: Vec::new(),
        mode: CreateMode::Persistent,
    }
}

/// Writes the state znodes of new partitions (`/brokers/topics/<t>/partitions/<p>/state`
/// with its parent `<p>`): one fenced multi per partition, pipelined, as Kafka's
/// `createTopicPartitionStatesRaw`. Not one multi for all: at a few thousand partitions it
/// would exceed ZooKeeper's `jute.maxbuffer` and the server would drop the connection. A
/// partition whose state already exists (a previous controller got that far) keeps the
/// stored one. Returns the states now stored, or the first failure.
async fn write_new_partition_states(
    zk: &KafkaZkClient,
    epoch_version: i32,
    controller_epoch: i32,
    topic: &str,
    states: BTreeMap<i32, LeaderIsr>,
) -> Result<BTreeMap<i32, LeaderIsr>, FencedError> {
    let writes = states
        .iter()
        .map(|(p, s)| {
            let mut s = s.clone();
            s.controller_epoch = controller_epoch;
            vec![
                Op::Create {
                    path: paths::partition(topic, *p),
                    data: Vec::new(),
                    mode: CreateMode::Persistent,
                },
                Op::Create {
                    path: paths::partition_state(topic, *p),
                    data: znodes::to_bytes(&state_znode(&s)),
                    mode: CreateMode::Persistent,
                },
            ]
        })
        .collect();
    let outcomes = zk.fenced_each(epoch_version, writes).await;
    let mut stored = BTreeMap::new();
    let mut existing = Vec::new();
    let mut failure = None;
    for ((p, s), outcome) in states.into_iter().zip(outcomes) {
        match outcome {
            Ok(()) => {
                stored.insert(p, s);
            }
            Err(FencedError::Coordination(CoordinationError::NodeExists { .. })) => {
                existing.push(p)
            }
            Err(e) => {
                if failure.is_none() || e == FencedError::ControllerMoved {
                    failure = Some(e);
                }
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let reads = zk
        .get_partition_states(topic, existing.iter().copied())
        .await;
    for (p, read) in existing.into_iter().zip(reads) {
        match read.map_err(FencedError::Coordination)? {
            Some((state, version)) => {
                stored.insert(p, leader_isr_of(state, version));
            }
            None => {
                return Err(FencedError::Coordination(CoordinationError::NoNode {
                    path: paths::partition_state(topic, p),
                }))
            }
        }
    }
    Ok(stored)
}

/// A partition state as read from its znode at `version` (the partition epoch).
fn leader_isr_of(state: znodes::PartitionStateZNode, version: i32) -> LeaderIsr {
    LeaderIsr {
        leader: state.leader,
        leader_epoch: state.leader_epoch,
        isr: state.isr,
        controller_epoch: state.controller_epoch,
        partition_epoch: version,
    }
}

/// One change per partition: the last decision wins.
fn dedup_changes(changes: &mut Vec<StateChange>) {
    let mut seen = BTreeSet::new();
    let mut out: Vec<StateChange> = Vec::new();
    for c in changes.drain(..).rev() {
        if seen.insert((c.topic.clone(), c.partition)) {
            out.push(c);
        }
    }
    out.reverse();
    *changes = out;
}

/// AlterConfigs replaces all overrides; IncrementalAlterConfigs edits them. APPEND and
/// SUBTRACT apply to the keys `list_default` knows as lists, starting from the default it
/// gives when the key has no override.
pub fn apply_config_change(
    current: &BTreeMap<String, String>,
    change: ConfigChange,
    list_default: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    match change {
        ConfigChange::Replace(entries) => Ok(entries
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect()),
        ConfigChange::Incremental(ops) => {
            let mut next = current.clone();
            for (key, op, value) in ops {
                match op {
                    AlterConfigOp::Set => {
                        next.insert(key, value.unwrap_or_default());
                    }
                    AlterConfigOp::Delete => {
                        next.remove(&key);
                    }
                    AlterConfigOp::Append | AlterConfigOp::Subtract => {
                        let Some(default) = list_default(&key) else {
                            return Err(ApiError::with_message(
                                ResponseError::InvalidConfig,
                                format!("Config value append/subtract is not allowed for config key {key}"),
                            ));
                        };
                        let split = |v: &str| -> Vec<String> {
                            v.split(',')
                                .map(|s| s.trim().to_string())
                                .filter(|s| !s.is_empty())
                                .collect()
                        };
                        let mut items: Vec<String> = next
                            .get(&key)
                            .map(|v| split(v))
                            .unwrap_or_else(|| split(&default));
                        for v in value
                            .unwrap_or_default()
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                        {
                            if op == AlterConfigOp::Append {
                                if !items.iter().any(|i| i == v) {
                                    items.push(v.to_string());
                                }
                            } else {
                                items.retain(|i| i != v);
                            }
                        }
                        next.insert(key, items.join(","));
                    }
                }
            }
            Ok(next)
        }
    }
}

#[cfg(test)]
mod tests {
    //! The controller alone: a real embedded coordination service, controllers on three
    //! "brokers" whose peer endpoints only record what they are sent.
    use std::sync::Mutex;

    use super::*;
    use crate::actors::controller::messages::{
        AlterConfigOp, ConfigChange, CreatePartitions, DeleteTopics, NewPartitions, NewTopic,
        TopicRef,
    };
    use crate::actors::coordination::{self, CoordinationConfig, EmbeddedCoordination};
    use crate::transport::peer::{LocalTransport, PeerHandler, PeerResponse, TransportError};
    use crate::transport::LinkFaults;

    /// A broker endpoint that records every request and acknowledges it (answering
    /// KAFKA_STORAGE_ERROR in LeaderAndIsr for the partitions of an offline log dir).
    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<PeerRequest>>,
        offline: Mutex<BTreeSet<(String, i32)>>,
        /// LeaderAndIsr is never answered (a broker stuck applying it).
        stall_leader_and_isr: std::sync::atomic::AtomicBool,
    }

    impl PeerHandler for Recorder {
        fn handle(
            &self,
            _from: i32,
            request: PeerRequest,
        ) -> BoxFuture<'static, Result<PeerResponse, TransportError>> {
            let response = match &request {
                PeerRequest::LeaderAndIsr(l) => {
                    let offline = self.offline.lock().unwrap();
                    PeerResponse::LeaderAndIsr(Ok(l
                        .partition_states
                        .iter()
                        .map(|s| {
                            let error = offline
                                .contains(&(s.topic.clone(), s.partition))
                                .then(|| ApiError::new(ResponseError::KafkaStorageError));
                            (TopicPartition::new(s.topic.clone(), s.partition), error)
                        })
                        .collect()))
                }
                PeerRequest::UpdateMetadata(_) => PeerResponse::UpdateMetadata(Ok(())),
                PeerRequest::StopReplica(_) => PeerResponse::StopReplica(Ok(vec![])),
                PeerRequest::TopicConfigChanged(_) => PeerResponse::TopicConfigChanged(Ok(())),
                PeerRequest::BrokerConfigChanged(_) => PeerResponse::BrokerConfigChanged(Ok(())),
                other => panic!("a broker does not expect {}", other.kind()),
            };
            let stall = matches!(request, PeerRequest::LeaderAndIsr(_))
                && self
                    .stall_leader_and_isr
                    .load(std::sync::atomic::Ordering::SeqCst);
            self.seen.lock().unwrap().push(request);
            if stall {
                return Box::pin(futures::future::pending());
            }
            Box::pin(async move { Ok(response) })
        }
    }

    impl Recorder {
        fn leader_and_isr_for(
            &self,
            topic: &str,
            partition: i32,
        ) -> Vec<LeaderAndIsrPartitionState> {
            self.seen
                .lock()
                .unwrap()
                .iter()
                .filter_map(|r| match r {
                    PeerRequest::LeaderAndIsr(l) => Some(l.partition_states.clone()),
                    _ => None,
                })
                .flatten()
                .filter(|s| s.topic == topic && s.partition == partition)
                .collect()
        }

        fn metadata_updates(&self) -> usize {
            self.seen
                .lock()
                .unwrap()
                .iter()
                .filter(|r| matches!(r, PeerRequest::UpdateMetadata(_)))
                .count()
        }
    }

    struct Harness {
        service: EmbeddedCoordination,
        controllers: BTreeMap<i32, Addr<Controller>>,
        recorders: BTreeMap<i32, Arc<Recorder>>,
        transport: Arc<LocalTransport>,
        observer: CoordinationClient,
    }

    const SESSION: Duration = Duration::from_millis(400);

    async fn start_broker(h: &mut Harness, id: i32) {
        start_broker_fed(h, id, None).await;
    }

    /// Starts broker `id`'s controller; with `feed`, its coordination events come from the
    /// test, not from its session.
    async fn start_broker_fed(h: &mut Harness, id: i32, feed: Option<SessionEventStream>) {
        let service = h.service.clone();
        let connector: Connector = Arc::new(move || {
            let service = service.clone();
            Box::pin(async move { Ok(coordination::connect(None, SESSION, Some(&service)).await?) })
        });
        let (client, events) = connector().await.unwrap();
        let events = feed.unwrap_or(events);
        let recorder = Arc::new(Recorder::default());
        h.transport.register(id, recorder.clone());
        let config = BrokerConfig {
            broker_id: id,
            default_replication_factor: 3,
            num_partitions: 3,
            ..BrokerConfig::default()
        };
        let deps = ControllerDeps {
            broker_id: id,
            config: Arc::new(config),
            peers: Peers::new(id, h.transport.clone(), Duration::from_secs(5)),
            registration: znodes::BrokerRegistration::new(
                vec![("PLAINTEXT".into(), "127.0.0.1".into(), 9000 + id as u16)],
                [("PLAINTEXT".to_string(), "PLAINTEXT".to_string())]
                    .into_iter()
                    .collect(),
                None,
            ),
            connector,
            on_registered: Arc::new(|_| {}),
        };
        h.recorders.insert(id, recorder);
        h.controllers
            .insert(id, Controller::new(deps, client, events).start());
    }

    async fn harness(brokers: i32) -> Harness {
        let service = EmbeddedCoordination::start(
            CoordinationConfig::in_memory().with_tick_time(Duration::from_millis(100)),
        )
        .await
        .unwrap();
        let (observer, _events) =
            coordination::connect(None, Duration::from_secs(4), Some(&service))
                .await
                .unwrap();
        let zk = KafkaZkClient::new(observer.clone());
        zk.create_top_level_paths().await.unwrap();
        zk.get_or_create_cluster_id("test-cluster-id")
            .await
            .unwrap();
        let mut h = Harness {
            service,
            controllers: BTreeMap::new(),
            recorders: BTreeMap::new(),
            transport: LocalTransport::new(LinkFaults::new()),
            observer,
        };
        for id in 1..=brokers {
            start_broker(&mut h, id).await;
        }
        h
    }

    async fn statuses(h: &Harness) -> Vec<ControllerStatus> {
        let mut out = Vec::new();
        for addr in h.controllers.values() {
            if let Ok(s) = addr.send(GetStatus).await {
                out.push(s);
            }
        }
        out
    }

    /// Waits until exactly one controller is active and every broker agrees on it.
    async fn wait_for_single_controller(h: &Harness, expected_brokers: usize) -> ControllerStatus {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = statuses(h).await;
            let active: Vec<_> = s.iter().filter(|s| s.is_active).cloned().collect();
            let live = h
                .observer
                .get_children(paths::BROKER_IDS, false)
                .await
                .unwrap_or_default();
            // The controller has seen them all once it told a broker about all of them.
            let controller_knows_all = active.first().is_some_and(|a| {
                h.recorders[&a.broker_id]
                    .seen
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|r| matches!(r, PeerRequest::UpdateMetadata(u) if u.live_brokers.len() == expected_brokers))
            });
            if active.len() == 1
                && live.len() == expected_brokers
                && controller_knows_all
                && s.iter().all(|x| x.controller_id == active[0].broker_id)
            {
                return active[0].clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no single controller: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn partition_state(h: &Harness, topic: &str, p: i32) -> znodes::PartitionStateZNode {
        let (data, _) = h
            .observer
            .get_data(&paths::partition_state(topic, p), false)
            .await
            .unwrap();
        znodes::from_bytes(&paths::partition_state(topic, p), &data).unwrap()
    }

    async fn create_topic(
        h: &Harness,
        controller: i32,
        name: &str,
        partitions: i32,
    ) -> Vec<CreateTopicOutcome> {
        h.controllers[&controller]
            .send(CreateTopics {
                topics: vec![NewTopic {
                    name: name.into(),
                    num_partitions: partitions,
                    replication_factor: 3,
                    assignments: vec![],
                    configs: vec![("retention.ms".into(), Some("60000".into()))],
                }],
                validate_only: false,
                timeout_ms: 0,
            })
            .await
            .unwrap()
    }

    #[actix::test]
    async fn a_create_topics_answer_waits_for_the_brokers_without_holding_the_controller() {
        let h = harness(3).await;
        let active = wait_for_single_controller(&h, 3).await.broker_id;
        let stuck = (1..=3).find(|b| *b != active).unwrap();
        h.recorders[&stuck]
            .stall_leader_and_isr
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let create = |name: &str, timeout_ms: i32| {
            h.controllers[&active].send(CreateTopics {
                topics: vec![NewTopic {
                    name: name.into(),
                    num_partitions: 1,
                    replication_factor: 3,
                    assignments: vec![],
                    configs: vec![],
                }],
                validate_only: false,
                timeout_ms,
            })
        };
        // No limit asked: the answer waits for the stuck broker (up to the forwarding cap).
        let waiting = tokio::task::spawn_local(create("patient", 0));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while h.recorders[&stuck]
            .leader_and_isr_for("patient", 0)
            .is_empty()
        {
            assert!(tokio::time::Instant::now() < deadline, "LeaderAndIsr sent");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Meanwhile the controller goes on: it answers its status, and a request with a
        // 200 ms limit creates its topic and says the brokers did not all confirm in time.
        tokio::time::timeout(
            Duration::from_secs(3),
            h.controllers[&active].send(GetStatus),
        )
        .await
        .expect("the controller is not held by the waiting answer")
        .unwrap();
        let limited = tokio::time::timeout(Duration::from_secs(3), create("hasty", 200))
            .await
            .expect("a limited request is answered at its limit")
            .unwrap();
        let err = limited[0].result.as_ref().unwrap_err();
        assert_eq!(err.code, ResponseError::RequestTimedOut.code());
        assert!(
            h.observer
                .exists(&paths::topic("hasty"), false)
                .await
                .unwrap()
                .is_some(),
            "the topic was created all the same"
        );
        assert!(!waiting.is_finished(), "the unlimited answer still waits");
        waiting.abort();
    }

    #[actix::test]
    async fn exactly_one_broker_becomes_controller_and_bumps_the_epoch() {
        let h = harness(3).await;
        let active = wait_for_single_controller(&h, 3).await;
        assert_eq!(active.epoch, 1);
        let (data, _) = h.observer.get_data(paths::CONTROLLER, false).await.unwrap();
        let znode: znodes::ControllerZNode = znodes::from_bytes(paths::CONTROLLER, &data).unwrap();
        assert_eq!(znode.brokerid, active.broker_id);
        let (epoch, _) = h
            .observer
            .get_data(paths::CONTROLLER_EPOCH, false)
            .await
            .unwrap();
        assert_eq!(znodes::decode_controller_epoch(&epoch), Some(1));
        // Case 2: every broker got the cluster snapshot from the controller.
        for r in h.recorders.values() {
            assert!(r.metadata_updates() >= 1);
        }
    }

    #[actix::test]
    async fn create_topic_writes_kafkas_znodes_and_tells_the_replicas() {
        let h = harness(3).await;
        let active = wait_for_single_controller(&h, 3).await;
        let outcome = create_topic(&h, active.broker_id, "orders", 3).await;
        let created = outcome[0].result.as_ref().expect("created");
        assert_eq!((created.num_partitions, created.replication_factor), (3, 3));

        let (data, _) = h
            .observer
            .get_data(&paths::topic("orders"), false)
            .await
            .unwrap();
        let topic: znodes::TopicZNode = znodes::from_bytes("/t", &data).unwrap();
        assert_eq!(topic.topic_uuid(), Some(created.topic_id));
        let assignment = topic.assignment();
        for p in 0..3 {
            let state = partition_state(&h, "orders", p).await;
            assert_eq!(
                state.leader, assignment[&p][0],
                "the preferred replica leads"
            );
            assert_eq!(state.leader_epoch, 0);
            assert_eq!(state.isr.len(), 3);
            for broker in &assignment[&p] {
                let seen = h.recorders[broker].leader_and_isr_for("orders", p);
                assert!(
                    seen.iter().any(|s| s.is_new && s.leader == state.leader),
                    "broker {broker} not told about orders-{p}"
                );
            }
        }
        let (config, _) = h
            .observer
            .get_data(&paths::topic_config("orders"), false)
            .await
            .unwrap();
        let config: znodes::ConfigZNode = znodes::from_bytes("/c", &config).unwrap();
        assert_eq!(config.config["retention.ms"], "60000");

        let again = create_topic(&h, active.broker_id, "orders", 3).await;
        assert_eq!(
            again[0].result.as_ref().unwrap_err().code,
            ResponseError::TopicAlreadyExists.code()
        );
        // A non-controller refuses.
        let other = *h
            .controllers
            .keys()
            .find(|id| **id != active.broker_id)
            .unwrap();
        let refused = create_topic(&h, other, "other", 1).await;
        assert_eq!(
            refused[0].result.as_ref().unwrap_err().code,
            ResponseError::NotController.code()
        );
    }

    #[actix::test]
    async fn a_dead_brokers_partitions_get_new_leaders_from_the_isr() {
        let mut h = harness(3).await;
        let active = wait_for_single_controller(&h, 3).await;
        create_topic(&h, active.broker_id, "orders", 3).await[0]
            .result
            .as_ref()
            .unwrap();
        let victim = *h
            .controllers
            .keys()
            .find(|id| **id != active.broker_id)
            .unwrap();
        let led_by_victim: Vec<i32> = {
            let mut v = Vec::new();
            for p in 0..3 {
                if partition_state(&h, "orders", p).await.leader == victim {
                    v.push(p);
                }
            }
            v
        };
        assert!(!led_by_victim.is_empty());
        // Crash: stop the actor; its session's heartbeats stop and it expires.
        let owner = h
            .observer
            .exists(&paths::broker(victim), false)
            .await
            .unwrap()
            .unwrap()
            .ephemeral_owner;
        h.controllers
            .remove(&victim)
            .unwrap()
            .send(StopForTest)
            .await
            .ok();
        h.transport.unregister(victim);
        h.service.expire_session(owner).await;

        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut done = true;
            for p in 0..3 {
                let s = partition_state(&h, "orders", p).await;
                if s.isr.contains(&victim) || s.leader == victim {
                    done = false;
                }
            }
            if done {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "ISRs still hold broker {victim}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for p in led_by_victim {
            let s = partition_state(&h, "orders", p).await;
            assert_ne!(s.leader, -1);
            assert_eq!(s.leader_epoch, 1, "a leader change bumps the leader epoch");
            let told = h.recorders[&s.leader].leader_and_isr_for("orders", p);
            assert!(told
                .iter()
                .any(|t| t.leader == s.leader && t.leader_epoch == 1));
        }
        let _ = &mut h;
    }

    #[actix::test]
    async fn another_broker_takes_over_when_the_controller_dies_and_the_old_one_is_fenced() {
        let mut h = harness(3).await;
        let first = wait_for_single_controller(&h, 3).await;
        let owner = h
            .observer
            .exists(paths::CONTROLLER, false)
            .await
            .unwrap()
            .unwrap()
            .ephemeral_owner;
        h.controllers
            .remove(&first.broker_id)
            .unwrap()
            .send(StopForTest)
            .await
            .ok();
        h.transport.unregister(first.broker_id);
        h.service.expire_session(owner).await;
        let second = wait_for_single_controller(&h, 2).await;
        assert_ne!(second.broker_id, first.broker_id);
        assert_eq!(second.epoch, first.epoch + 1);

        // A write fenced with the old controller's epoch version fails.
        let zk = KafkaZkClient::new(h.observer.clone());
        let stale = zk
            .fenced(
                0,
                vec![Op::Create {
                    path: "/stale".into(),
                    data: vec![],
                    mode: CreateMode::Persistent,
                }],
            )
            .await;
        assert_eq!(stale, Err(FencedError::ControllerMoved));
        let _ = &mut h;
    }

    /// Stops the actor as a crash would (no resignation, no session close).
    /// Crashes broker `id`: its controller actor stops and its session expires at once.
    async fn kill(h: &mut Harness, id: i32) {
        let owner = h
            .observer
            .exists(&paths::broker(id), false)
            .await
            .unwrap()
            .unwrap()
            .ephemeral_owner;
        h.controllers
            .remove(&id)
            .unwrap()
            .send(StopForTest)
            .await
            .ok();
        h.transport.unregister(id);
        h.service.expire_session(owner).await;
    }

    /// Waits until `topic`-`p`'s state znode satisfies `f`.
    async fn wait_state(
        h: &Harness,
        topic: &str,
        p: i32,
        what: &str,
        f: impl Fn(&znodes::PartitionStateZNode) -> bool,
    ) -> znodes::PartitionStateZNode {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = partition_state(h, topic, p).await;
            if f(&s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: state is {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A one-partition topic on exactly `replicas` (in preference order).
    async fn create_on(h: &Harness, controller: i32, name: &str, replicas: Vec<i32>) {
        let outcome = h.controllers[&controller]
            .send(CreateTopics {
                topics: vec![NewTopic {
                    name: name.into(),
                    num_partitions: -1,
                    replication_factor: -1,
                    assignments: vec![(0, replicas.clone())],
                    configs: vec![],
                }],
                validate_only: false,
                timeout_ms: 0,
            })
            .await
            .unwrap();
        if let Err(e) = &outcome[0].result {
            panic!("creating {name} on {replicas:?}: {e:?}");
        }
    }

    #[actix::test]
    async fn a_log_dir_failure_notification_moves_leadership_off_the_offline_replicas_only() {
        let h = harness(3).await;
        let active = wait_for_single_controller(&h, 3).await;
        let victim = *h
            .controllers
            .keys()
            .find(|id| **id != active.broker_id)
            .unwrap();
        let others: Vec<i32> = (1..=3).filter(|id| *id != victim).collect();
        // Two partitions led by the victim; only the first one's dir fails.
        create_on(
            &h,
            active.broker_id,
            "failed",
            vec![victim, others[0], others[1]],
        )
        .await;
        create_on(
            &h,
            active.broker_id,
            "healthy",
            vec![victim, others[0], others[1]],
        )
        .await;
        for topic in ["failed", "healthy"] {
            wait_state(&h, topic, 0, "the victim leads", |s| {
                s.leader == victim && s.isr.len() == 3
            })
            .await;
        }
        h.recorders[&victim]
            .offline
            .lock()
            .unwrap()
            .insert(("failed".into(), 0));
        h.controllers[&victim]
            .send(NotifyLogDirFailure)
            .await
            .unwrap();
        let moved = wait_state(
            &h,
            "failed",
            0,
            "leadership moves off the offline replica",
            |s| s.leader != victim && !s.isr.contains(&victim),
        )
        .await;
        assert_eq!(
            moved.leader, others[0],
            "the next ISR replica in assignment order"
        );
        // The notification was consumed, and the healthy partition kept its leader and ISR.
        let pending = h
            .observer
            .get_children(paths::LOG_DIR_EVENT_NOTIFICATION, false)
            .await
            .unwrap();
        assert!(pending.is_empty(), "{pending:?}");
        let healthy = partition_state(&h, "healthy", 0).await;
        assert_eq!(healthy.leader, victim);
        assert_eq!(healthy.isr.len(), 3);
    }

    #[actix::test]
    async fn the_last_isr_member_dying_takes_the_partition_offline_until_it_returns() {
        let mut h = harness(4).await;
        let active = wait_for_single_controller(&h, 4).await;
        let replicas: Vec<i32> = (1..=4).filter(|b| *b != active.broker_id).collect();
        create_on(&h, active.broker_id, "last", replicas.clone()).await;
        let (x, y, z) = (replicas[0], replicas[1], replicas[2]);
        kill(&mut h, y).await;
        kill(&mut h, z).await;
        let s = wait_state(&h, "last", 0, "the ISR shrinks to the leader", |s| {
            s.isr == vec![x]
        })
        .await;
        assert_eq!(s.leader, x);
        // The last ISR member dies: it stays in the ISR and the partition has no leader (no
        // unclean election: the others may miss acknowledged records).
        kill(&mut h, x).await;
        let s = wait_state(&h, "last", 0, "the partition goes offline", |s| {
            s.leader == -1
        })
        .await;
        assert_eq!(s.isr, vec![x]);
        // It returns: leader again, in a new epoch, and told so.
        start_broker(&mut h, x).await;
        let s = wait_state(&h, "last", 0, "the last ISR member leads again", |s| {
            s.leader == x
        })
        .await;
        assert!(s.leader_epoch > 1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !h.recorders[&x]
            .leader_and_isr_for("last", 0)
            .iter()
            .any(|t| t.leader == x && t.leader_epoch == s.leader_epoch)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "broker {x} was not told"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[actix::test]
    async fn a_returning_broker_is_told_the_roles_of_its_replicas() {
        let mut h = harness(3).await;
        let active = wait_for_single_controller(&h, 3).await;
        create_topic(&h, active.broker_id, "back", 3).await[0]
            .result
            .as_ref()
            .unwrap();
        let victim = *h
            .controllers
            .keys()
            .find(|id| **id != active.broker_id)
            .unwrap();
        kill(&mut h, victim).await;
        for p in 0..3 {
            wait_state(&h, "back", p, "the ISR drops the dead broker", |s| {
                !s.isr.contains(&victim)
            })
            .await;
        }
        start_broker(&mut h, victim).await;
        // Every partition it hosts (all three: RF=3 on three brokers) comes with a role.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let told: BTreeSet<i32> = (0..3)
                .filter(|p| {
                    !h.recorders[&victim]
                        .leader_and_isr_for("back", *p)
                        .is_empty()
                })
                .collect();
            if told.len() == 3 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "told about {told:?} only"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(h.recorders[&victim].metadata_updates() > 0);
    }

    #[actix::test]
    async fn preferred_leader_election_moves_leadership_back_to_the_first_replica() {
        let mut h = harness(3).await;
        let active = wait_for_single_controller(&h, 3).await;
        let others: Vec<i32> = (1..=3).filter(|b| *b != active.broker_id).collect();
        let preferred = others[0];
        create_on(
            &h,
            active.broker_id,
            "pref",
            vec![preferred, others[1], active.broker_id],
        )
        .await;
        kill(&mut h, preferred).await;
        wait_state(&h, "pref", 0, "leadership moves away", |s| {
            s.leader >= 0 && s.leader != preferred
        })
        .await;
        start_broker(&mut h, preferred).await;
        // The returning broker is not in the ISR until it catches up: here the test plays
        // its leader's part and records it back in (as AlterPartition would).
        let zk = KafkaZkClient::new(h.observer.clone());
        let (state, version) = zk.get_partition_state("pref", 0).await.unwrap().unwrap();
        let mut isr = state.isr.clone();
        isr.push(preferred);
        let answer = h.controllers[&active.broker_id]
            .send(AlterPartition {
                broker_id: state.leader,
                broker_epoch: statuses(&h)
                    .await
                    .iter()
                    .find(|s| s.broker_id == state.leader)
                    .unwrap()
                    .broker_epoch,
                partitions: vec![crate::actors::controller::messages::AlterPartitionItem {
                    topic: "pref".into(),
                    partition: 0,
                    leader_epoch: state.leader_epoch,
                    partition_epoch: version,
                    new_isr: isr,
                }],
            })
            .await
            .unwrap()
            .unwrap();
        assert!(answer[0].1.is_ok(), "{answer:?}");
        let elected = h.controllers[&active.broker_id]
            .send(ElectLeaders {
                partitions: Some(vec![TopicPartition::new("pref", 0)]),
                election: ElectionType::Preferred,
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(elected, vec![(TopicPartition::new("pref", 0), Ok(()))]);
        let s = partition_state(&h, "pref", 0).await;
        assert_eq!(s.leader, preferred);
        // Asked again: nothing to do.
        let again = h.controllers[&active.broker_id]
            .send(ElectLeaders {
                partitions: Some(vec![TopicPartition::new("pref", 0)]),
                election: ElectionType::Preferred,
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            again[0].1.as_ref().unwrap_err().code,
            ResponseError::ElectionNotNeeded.code()
        );
    }

    #[actix::test]
    async fn only_the_controller_watches_brokers_and_topics_the_others_watch_the_controller() {
        use crate::actors::coordination::tree::WatchInfo;
        let h = harness(3).await;
        let active = wait_for_single_controller(&h, 3).await;
        create_topic(&h, active.broker_id, "watched", 1).await[0]
            .result
            .as_ref()
            .unwrap();
        // Session ids, by broker, from the registrations' ephemeral owners.
        let mut session_of = BTreeMap::new();
        for id in 1..=3 {
            let stat = h
                .observer
                .exists(&paths::broker(id), false)
                .await
                .unwrap()
                .unwrap();
            session_of.insert(id, stat.ephemeral_owner);
        }
        let watches = h.service.watches().await.unwrap();
        let of = |id: i32| watches.get(&session_of[&id]).cloned().unwrap_or_default();
        let controller = of(active.broker_id);
        for expected in [
            WatchInfo::Children(paths::BROKER_IDS.into()),
            WatchInfo::Children(paths::BROKER_TOPICS.into()),
            WatchInfo::Children(paths::DELETE_TOPICS.into()),
            WatchInfo::Children(paths::CONFIG_CHANGES.into()),
            WatchInfo::Children(paths::LOG_DIR_EVENT_NOTIFICATION.into()),
            WatchInfo::Data(paths::CONTROLLER.into()),
        ] {
            assert!(
                controller.contains(&expected),
                "controller lacks {expected:?}: {controller:?}"
            );
        }
        for id in (1..=3).filter(|id| *id != active.broker_id) {
            // Case 1, Step 1.4: an ordinary broker watches `/controller` and nothing else.
            assert_eq!(
                of(id),
                vec![WatchInfo::Data(paths::CONTROLLER.into())],
                "broker {id}"
            );
        }
    }

    #[actix::test]
    async fn a_new_broker_gets_the_whole_cluster_in_one_update_metadata() {
        let mut h = harness(3).await;
        let active = wait_for_single_controller(&h, 3).await;
        create_topic(&h, active.broker_id, "before", 2).await[0]
            .result
            .as_ref()
            .unwrap();
        // Case 2: broker 4 starts with nothing; the controller sends it every broker and
        // every topic, with leaders, ISRs and leader epochs, in one full UpdateMetadata.
        start_broker(&mut h, 4).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let full = loop {
            let found = h.recorders[&4]
                .seen
                .lock()
                .unwrap()
                .iter()
                .find_map(|r| match r {
                    PeerRequest::UpdateMetadata(u)
                        if u.kind == UpdateMetadataKind::Full && u.live_brokers.len() == 4 =>
                    {
                        Some(u.clone())
                    }
                    _ => None,
                });
            if let Some(full) = found {
                break full;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no full UpdateMetadata"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(full.controller_id, active.broker_id);
        let topic = full
            .topic_states
            .iter()
            .find(|t| t.name == "before")
            .expect("the topic");
        assert_eq!(topic.partitions.len(), 2);
        for p in &topic.partitions {
            assert!(
                p.leader >= 0 && !p.isr.is_empty() && p.leader_epoch >= 0,
                "{p:?}"
            );
        }
    }

    fn new_topic(name: &str, partitions: i32, replication_factor: i16) -> NewTopic {
        NewTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor,
            assignments: vec![],
            configs: vec![],
        }
    }

    async fn send_creations(h: &Harness, controller: i32, topics: Vec<NewTopic>) -> Vec<i16> {
        h.controllers[&controller]
            .send(CreateTopics {
                topics,
                validate_only: false,
                timeout_ms: 0,
            })
            .await
            .unwrap()
            .iter()
            .map(|o| o.result.as_ref().err().map_or(0, |e| e.code))
            .collect()
    }

    fn assert_codes<K: std::fmt::Debug>(outcomes: &[(K, Result<(), ApiError>)], codes: &[i16]) {
        let got: Vec<i16> = outcomes
            .iter()
            .map(|(_, r)| r.as_ref().err().map_or(0, |e| e.code))
            .collect();
        assert_eq!(got, codes, "{outcomes:?}");
    }

    /// Three brokers, their controller's id, and a topic created through it.
    async fn three_brokers_with_topic(name: &str, partitions: i32) -> (Harness, i32) {
        let h = harness(3).await;
        let active = wait_for_single_controller(&h, 3).await.broker_id;
        let created = send_creations(&h, active, vec![new_topic(name, partitions, 3)]).await;
        assert_eq!(created, [0]);
        (h, active)
    }

    #[actix::test]
    async fn invalid_creations_get_kafkas_error_codes_and_write_nothing() {
        let h = harness(3).await;
        let active = wait_for_single_controller(&h, 3).await.broker_id;
        let mut bad_config = new_topic("configured", 1, 1);
        bad_config.configs = vec![("retention.ms".into(), Some("later".into()))];
        let mut unknown_config = new_topic("configured2", 1, 1);
        unknown_config.configs = vec![("no.such.key".into(), Some("1".into()))];
        let codes = send_creations(
            &h,
            active,
            vec![
                new_topic("bad name", 1, 1),
                new_topic("zero", 0, 1),
                new_topic("replicated", 1, 4),
                bad_config,
                unknown_config,
            ],
        )
        .await;
        assert_eq!(
            codes,
            vec![
                ResponseError::InvalidTopicException.code(),
                ResponseError::InvalidPartitions.code(),
                ResponseError::InvalidReplicationFactor.code(),
                ResponseError::InvalidConfig.code(),
                ResponseError::InvalidConfig.code(),
            ]
        );
        let zk = KafkaZkClient::new(h.observer.clone());
        assert!(zk
            .get_children(paths::BROKER_TOPICS, false)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            send_creations(&h, active, vec![new_topic("t", 1, 3)]).await,
            [0]
        );
        assert_eq!(
            send_creations(&h, active, vec![new_topic("t", 1, 3)]).await,
            [ResponseError::TopicAlreadyExists.code()]
        );
    }

    #[actix::test]
    async fn a_deleted_topic_leaves_the_znodes_and_an_unknown_one_is_an_error() {
        let (h, active) = three_brokers_with_topic("gone", 4).await;
        let outcomes = h.controllers[&active]
            .send(DeleteTopics {
                topics: vec![
                    TopicRef::Name("gone".into()),
                    TopicRef::Name("never".into()),
                ],
            })
            .await
            .unwrap();
        assert!(outcomes[0].error.is_none(), "{outcomes:?}");
        assert_eq!(
            outcomes[1].error.as_ref().unwrap().code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        // Deletion completes after the replicas stop (Kafka's TopicDeletionManager).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while h
            .observer
            .exists(&paths::topic("gone"), false)
            .await
            .unwrap()
            .is_some()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "/brokers/topics/gone stays"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(h
            .observer
            .exists(&paths::topic_config("gone"), false)
            .await
            .unwrap()
            .is_none());
    }

    #[actix::test]
    async fn partitions_can_only_grow() {
        let (h, active) = three_brokers_with_topic("grow", 2).await;
        let grow = |count| NewPartitions {
            name: "grow".into(),
            count,
            assignments: None,
        };
        let outcomes = h.controllers[&active]
            .send(CreatePartitions {
                topics: vec![grow(5), grow(1)],
                validate_only: false,
                timeout_ms: 0,
            })
            .await
            .unwrap();
        assert_codes(&outcomes, &[0, ResponseError::InvalidPartitions.code()]);
        let zk = KafkaZkClient::new(h.observer.clone());
        let (topic, _) = zk.get_topic("grow", false).await.unwrap().unwrap();
        assert_eq!(topic.assignment().len(), 5);
        for p in 0..5 {
            assert!(
                zk.get_partition_state("grow", p).await.unwrap().is_some(),
                "{p}"
            );
        }
    }

    #[actix::test]
    async fn incremental_config_changes_validate_and_are_recorded_with_a_notification() {
        let (h, active) = three_brokers_with_topic("cfg", 1).await;
        let outcomes = h.controllers[&active]
            .send(AlterEntityConfigs {
                changes: vec![
                    (
                        ConfigEntity::Topic("cfg".into()),
                        ConfigChange::Incremental(vec![
                            (
                                "retention.ms".into(),
                                AlterConfigOp::Set,
                                Some("5000".into()),
                            ),
                            (
                                "cleanup.policy".into(),
                                AlterConfigOp::Append,
                                Some("compact".into()),
                            ),
                        ]),
                    ),
                    (
                        ConfigEntity::Topic("cfg".into()),
                        ConfigChange::Incremental(vec![(
                            "retention.ms".into(),
                            AlterConfigOp::Append,
                            Some("1".into()),
                        )]),
                    ),
                ],
                validate_only: false,
            })
            .await
            .unwrap();
        assert_codes(&outcomes, &[0, ResponseError::InvalidConfig.code()]);
        let zk = KafkaZkClient::new(h.observer.clone());
        let config = zk.get_topic_config("cfg").await.unwrap();
        assert_eq!(config.get("retention.ms").map(String::as_str), Some("5000"));
        assert_eq!(
            config.get("cleanup.policy").map(String::as_str),
            Some("delete,compact")
        );
        // The notification may already be consumed (the controller deletes those it applied):
        // its creation shows in the parent's child version.
        let changes = h
            .observer
            .exists(paths::CONFIG_CHANGES, false)
            .await
            .unwrap()
            .unwrap();
        assert!(
            changes.cversion > 0,
            "no config change notification was written"
        );
    }

    /// The BrokerConfigChanged messages `recorder` has seen for `entity`, oldest first.
    fn broker_configs_seen(
        recorder: &Recorder,
        entity: &ConfigEntity,
    ) -> Vec<BTreeMap<String, String>> {
        recorder
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| match r {
                PeerRequest::BrokerConfigChanged(c) if c.entity == *entity => {
                    Some(c.configs.clone())
                }
                _ => None,
            })
            .collect()
    }

    #[actix::test]
    async fn dynamic_broker_configs_are_validated_recorded_and_sent_to_every_broker() {
        let mut h = harness(3).await;
        let active = wait_for_single_controller(&h, 3).await.broker_id;
        let set = |key: &str, value: &str| {
            ConfigChange::Incremental(vec![(key.into(), AlterConfigOp::Set, Some(value.into()))])
        };
        let outcomes = h.controllers[&active]
            .send(AlterEntityConfigs {
                changes: vec![
                    (ConfigEntity::BrokerDefault, set("log.retention.ms", "5000")),
                    (
                        ConfigEntity::Broker(2),
                        set("sasl.kerberos.min.time.before.relogin", "58000"),
                    ),
                    // Kafka's refusals: a per-broker key at the cluster level, a static key.
                    (
                        ConfigEntity::BrokerDefault,
                        set("sasl.kerberos.min.time.before.relogin", "58000"),
                    ),
                    (ConfigEntity::Broker(1), set("broker.id", "9")),
                    (ConfigEntity::Broker(1), set("background.threads", "many")),
                ],
                validate_only: false,
            })
            .await
            .unwrap();
        let invalid = ResponseError::InvalidRequest.code();
        assert_codes(&outcomes, &[0, 0, invalid, invalid, invalid]);

        let zk = KafkaZkClient::new(h.observer.clone());
        let default = zk.get_config("/config/brokers/<default>").await.unwrap();
        assert_eq!(
            default.get("log.retention.ms").map(String::as_str),
            Some("5000")
        );
        let own = zk.get_config("/config/brokers/2").await.unwrap();
        assert_eq!(own.len(), 1, "{own:?}");
        assert!(zk.get_config("/config/brokers/1").await.unwrap().is_empty());

        // Every broker is told both (each applies only the default and its own).
        for b in 1..=3 {
            let seen = broker_configs_seen(&h.recorders[&b], &ConfigEntity::BrokerDefault);
            assert_eq!(seen.last(), Some(&default), "broker {b}");
            let seen = broker_configs_seen(&h.recorders[&b], &ConfigEntity::Broker(2));
            assert_eq!(seen.last(), Some(&own), "broker {b}");
        }

        // A broker that joins later gets the default before its replicas' roles.
        start_broker(&mut h, 4).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while broker_configs_seen(&h.recorders[&4], &ConfigEntity::BrokerDefault).is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "broker 4 never got the dynamic default"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(broker_configs_seen(&h.recorders[&4], &ConfigEntity::Broker(4)).is_empty());

        // DELETE goes back to nothing; APPEND on a list starts from Kafka's default.
        let outcomes = h.controllers[&active]
            .send(AlterEntityConfigs {
                changes: vec![(
                    ConfigEntity::BrokerDefault,
                    ConfigChange::Incremental(vec![
                        ("log.retention.ms".into(), AlterConfigOp::Delete, None),
                        (
                            "log.cleanup.policy".into(),
                            AlterConfigOp::Append,
                            Some("compact".into()),
                        ),
                    ]),
                )],
                validate_only: false,
            })
            .await
            .unwrap();
        assert_codes(&outcomes, &[0]);
        let default = zk.get_config("/config/brokers/<default>").await.unwrap();
        assert_eq!(
            default,
            BTreeMap::from([(
                "log.cleanup.policy".to_string(),
                "delete,compact".to_string()
            )])
        );
    }

    /// actix polls an actor's streams right after a mailbox message that started a wait
    /// (`AtomicResponse`), before that wait holds them back: a coordination event arriving
    /// together with such a message finds the controller's core out. It must still be
    /// handled: here a session expiry, whose loss left a broker never re-registering.
    #[actix::test]
    async fn a_session_expiry_arriving_while_the_controller_is_busy_is_still_handled() {
        let mut h = harness(0).await;
        let (feed, events) = tokio::sync::mpsc::unbounded_channel();
        start_broker_fed(&mut h, 1, Some(SessionEventStream::fed_by(events))).await;
        wait_for_single_controller(&h, 1).await;
        let controller = h.controllers[&1].clone();
        let first_session = controller.send(CurrentSession).await.unwrap();

        // Both ready before the actor next runs: the message first takes the core, then the
        // stream yields the expiry.
        controller.do_send(AutoLeaderRebalance);
        feed.send(SessionEvent::State(SessionState::Expired))
            .unwrap();

        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let session = controller.send(CurrentSession).await.unwrap();
            if session != first_session {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the expiry was lost: the controller still runs on session {first_session:#x}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Re-registered on the new session, and controller again.
        let status = wait_for_single_controller(&h, 1).await;
        assert_eq!(status.broker_id, 1);
    }

    #[actix::test]
    async fn a_watch_whose_reads_lost_the_coordination_link_is_handled_again_once_it_heals() {
        let mut h = harness(0).await;
        let (feed, events) = tokio::sync::mpsc::unbounded_channel();
        start_broker_fed(&mut h, 1, Some(SessionEventStream::fed_by(events))).await;
        wait_for_single_controller(&h, 1).await;
        let controller = h.controllers[&1].clone();
        // A topic written by a tool after the election; its watch event is fed by hand.
        let assignment: BTreeMap<i32, Vec<i32>> = [(0, vec![1])].into_iter().collect();
        h.observer
            .create(
                &paths::topic("tool"),
                &znodes::to_bytes(&znodes::TopicZNode::new(&assignment, Uuid::new_v4())),
                CreateMode::Persistent,
            )
            .await
            .unwrap();
        let state = paths::partition_state("tool", 0);

        controller.send(SessionFault::Cut).await.unwrap().unwrap();
        feed.send(SessionEvent::Watch(WatchedEvent {
            event_type: EventType::NodeChildrenChanged,
            path: paths::BROKER_TOPICS.into(),
        }))
        .unwrap();
        // The first round trip lets the actor take the event; the second is answered only
        // once handling it is over, its reads failed on the cut link.
        controller.send(CurrentSession).await.unwrap();
        controller.send(CurrentSession).await.unwrap();
        assert!(
            h.observer.exists(&state, false).await.unwrap().is_none(),
            "the event was handled before the cut: this test would prove nothing"
        );

        controller.send(SessionFault::Heal).await.unwrap().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while h.observer.exists(&state, false).await.unwrap().is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the watch event was dropped: the tool's topic never got its partition state"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct StopForTest;

    impl Handler<StopForTest> for Controller {
        type Result = ();
        fn handle(&mut self, _: StopForTest, ctx: &mut Self::Context) {
            ctx.stop();
        }
    }
}

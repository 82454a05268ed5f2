//! The session-timeout actor, ZooKeeper's SessionTracker: it knows every session's deadline
//! (last sign of life + negotiated timeout) and tells the tree when one passes, which is how a
//! crashed broker's `/brokers/ids/<id>` disappears.
//!
//! It keeps one ordered set of `(deadline, session)` and one timer armed for the earliest
//! deadline (mini-redis' purge task, as an actor). A touch only moves a session's deadline
//! later, so it never re-arms the timer; when the timer fires early because the session it was
//! armed for was touched meanwhile, the actor expires nothing and re-arms for the new earliest
//! deadline. A newly tracked session with an earlier deadline re-arms at once. No loop ever
//! walks all sessions.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::types::SessionId;

/// Start (or restart) tracking a session with a fresh deadline of now + `timeout`.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct TrackSession {
    pub session: SessionId,
    pub timeout: Duration,
}

/// A sign of life (request or heartbeat): the deadline moves to now + timeout.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Touch(pub SessionId);

/// The session ended (closed, or expired and handled): forget it.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct UntrackSession(pub SessionId);

/// Sent to the tree when a session's deadline passes. The session is no longer tracked.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct SessionTimedOut(pub SessionId);

/// When the armed timer fires next (`None`: nothing tracked). For tests and diagnostics.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Option<Instant>")]
pub struct NextWakeup;

/// A session's current deadline (`None`: not tracked).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Option<Instant>")]
pub struct DeadlineOf(pub SessionId);

pub struct SessionTimeoutActor {
    /// Every tracked deadline, earliest first; the session id breaks ties between equal
    /// instants so two sessions never share an entry.
    deadlines: BTreeSet<(Instant, SessionId)>,
    /// Each tracked session's current deadline (to find its entry in `deadlines`) and timeout
    /// (to compute the next one on a touch).
    sessions: HashMap<SessionId, (Instant, Duration)>,
    /// The one armed timer and the instant it was armed for.
    timer: Option<(Instant, SpawnHandle)>,
    /// Who is told of expiries: the tree actor.
    on_expiry: Recipient<SessionTimedOut>,
}

impl SessionTimeoutActor {
    pub fn new(on_expiry: Recipient<SessionTimedOut>) -> Self {
        SessionTimeoutActor {
            deadlines: BTreeSet::new(),
            sessions: HashMap::new(),
            timer: None,
            on_expiry,
        }
    }

    fn set_deadline(&mut self, session: SessionId, deadline: Instant, timeout: Duration) {
        if let Some((old, _)) = self.sessions.insert(session, (deadline, timeout)) {
            self.deadlines.remove(&(old, session));
        }
        self.deadlines.insert((deadline, session));
    }

    /// Arms the timer for the earliest deadline unless it already fires at or before it.
    fn rearm(&mut self, ctx: &mut Context<Self>) {
        let Some(&(earliest, _)) = self.deadlines.first() else {
            if let Some((_, handle)) = self.timer.take() {
                ctx.cancel_future(handle);
            }
            return;
        };
        if let Some((armed_for, handle)) = self.timer {
            if armed_for <= earliest {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = earliest.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.expire_due(ctx);
        });
        self.timer = Some((earliest, handle));
    }

    fn expire_due(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        while let Some(&(deadline, session)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.remove(&(deadline, session));
            self.sessions.remove(&session);
            tracing::debug!(session = format!("{session:#x}"), "session timed out");
            self.on_expiry.do_send(SessionTimedOut(session));
        }
        self.rearm(ctx);
    }
}

impl Actor for SessionTimeoutActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Every session's heartbeats arrive here; never make a heartbeat wait for room.
        ctx.set_mailbox_capacity(usize::MAX >> 2);
    }
}

impl Handler<TrackSession> for SessionTimeoutActor {
    type Result = ();

    fn handle(&mut self, msg: TrackSession, ctx: &mut Context<Self>) {
        self.set_deadline(msg.session, Instant::now() + msg.timeout, msg.timeout);
        self.rearm(ctx);
    }
}

impl Handler<Touch> for SessionTimeoutActor {
    type Result = ();

    fn handle(&mut self, Touch(session): Touch, _ctx: &mut Context<Self>) {
        // A touch only moves a deadline later, so the armed timer stays valid (see //!).
        if let Some(&(_, timeout)) = self.sessions.get(&session) {
            self.set_deadline(session, Instant::now() + timeout, timeout);
        }
    }
}

impl Handler<UntrackSession> for SessionTimeoutActor {
    type Result = ();

    fn handle(&mut self, UntrackSession(session): UntrackSession, ctx: &mut Context<Self>) {
        if let Some((deadline, _)) = self.sessions.remove(&session) {
            self.deadlines.remove(&(deadline, session));
        }
        if self.deadlines.is_empty() {
            self.rearm(ctx);
        }
    }
}

impl Handler<NextWakeup> for SessionTimeoutActor {
    type Result = Option<Instant>;

    fn handle(&mut self, _: NextWakeup, _ctx: &mut Context<Self>) -> Option<Instant> {
        self.timer.as_ref().map(|(at, _)| *at)
    }
}

impl Handler<DeadlineOf> for SessionTimeoutActor {
    type Result = Option<Instant>;

    fn handle(
        &mut self,
        DeadlineOf(session): DeadlineOf,
        _ctx: &mut Context<Self>,
    ) -> Self::Result {
        self.sessions.get(&session).map(|(deadline, _)| *deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// Stands in for the tree: records expiries in order.
    struct ExpiryProbe(mpsc::UnboundedSender<(SessionId, Instant)>);

    impl Actor for ExpiryProbe {
        type Context = Context<Self>;
    }

    impl Handler<SessionTimedOut> for ExpiryProbe {
        type Result = ();
        fn handle(&mut self, SessionTimedOut(s): SessionTimedOut, _: &mut Context<Self>) {
            let _ = self.0.send((s, Instant::now()));
        }
    }

    fn start() -> (
        Addr<SessionTimeoutActor>,
        mpsc::UnboundedReceiver<(SessionId, Instant)>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let probe = ExpiryProbe(tx).start();
        (SessionTimeoutActor::new(probe.recipient()).start(), rx)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[actix::test]
    async fn silent_sessions_expire_in_deadline_order_and_not_before() {
        let (actor, mut expired) = start();
        let began = Instant::now();
        actor
            .send(TrackSession {
                session: 1,
                timeout: ms(300),
            })
            .await
            .unwrap();
        actor
            .send(TrackSession {
                session: 2,
                timeout: ms(100),
            })
            .await
            .unwrap();
        let (first, at_first) = expired.recv().await.unwrap();
        let (second, at_second) = expired.recv().await.unwrap();
        assert_eq!((first, second), (2, 1));
        assert!(at_first - began >= ms(100));
        assert!(at_second - began >= ms(300));
        assert_eq!(actor.send(NextWakeup).await.unwrap(), None);
    }

    #[actix::test]
    async fn an_earlier_session_rearms_the_timer_at_once() {
        let (actor, _expired) = start();
        actor
            .send(TrackSession {
                session: 1,
                timeout: ms(10_000),
            })
            .await
            .unwrap();
        let late = actor.send(NextWakeup).await.unwrap().unwrap();
        actor
            .send(TrackSession {
                session: 2,
                timeout: ms(5_000),
            })
            .await
            .unwrap();
        let early = actor.send(NextWakeup).await.unwrap().unwrap();
        assert!(early < late);
        assert_eq!(actor.send(DeadlineOf(2)).await.unwrap(), Some(early));
    }

    #[actix::test]
    async fn touched_sessions_stay_alive_and_untracked_ones_never_expire() {
        let (actor, mut expired) = start();
        let began = Instant::now();
        actor
            .send(TrackSession {
                session: 1,
                timeout: ms(150),
            })
            .await
            .unwrap();
        actor
            .send(TrackSession {
                session: 2,
                timeout: ms(100),
            })
            .await
            .unwrap();
        actor.send(UntrackSession(2)).await.unwrap();
        // Heartbeats every 50 ms for 400 ms keep session 1 alive well past its timeout.
        let mut last_touch = began;
        while began.elapsed() < ms(400) {
            last_touch = Instant::now();
            actor.send(Touch(1)).await.unwrap();
            assert!(expired.try_recv().is_err(), "expired while heartbeating");
            actix_rt::time::sleep(ms(50)).await;
        }
        let (session, at) = expired.recv().await.unwrap();
        assert_eq!(session, 1);
        assert!(at >= last_touch + ms(150));
        assert!(expired.try_recv().is_err());
    }

    #[actix::test]
    async fn touching_an_unknown_session_tracks_nothing() {
        let (actor, _expired) = start();
        actor.send(Touch(42)).await.unwrap();
        assert_eq!(actor.send(DeadlineOf(42)).await.unwrap(), None);
        assert_eq!(actor.send(NextWakeup).await.unwrap(), None);
    }
}

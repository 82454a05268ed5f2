//! `weir trace render`: a trace file drawn as a sequence diagram, in Mermaid
//! (`sequenceDiagram`, for Markdown on GitHub and the docs) or as aligned text for a terminal.
//!
//! Before drawing, the renderer
//! - names coordination sessions after their broker (a session that created
//!   `/brokers/ids/<N>` is broker N's, also for what it did before registering);
//! - keeps the events inside the requested window, topic/partition and actors (a response is
//!   kept with its request; faults are kept whenever their actors are, as context);
//! - folds chatter: repeated `ReplicaFetch`, `Fetch` and `Heartbeat` requests and responses
//!   on one link become one line with a count (`b2->>b1: ReplicaFetch ×12`), until the
//!   poller does something else ([`lines`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use super::event::{actor, Category, Event};

/// The kinds folded when repeated: fetch long-polls and group heartbeats.
pub const CHATTER: &[&str] = &["ReplicaFetch", "Fetch", "Heartbeat"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Mermaid,
    Text,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mermaid" => Ok(Format::Mermaid),
            "text" => Ok(Format::Text),
            other => Err(format!("`{other}`: the formats are mermaid and text")),
        }
    }
}

/// What to draw.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Microseconds since the trace started; events before are left out.
    pub from_us: Option<u64>,
    /// Events after are left out.
    pub to_us: Option<u64>,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    /// Actor names (`b1`, `coord`, `client:*`); an event is kept when both its ends are
    /// among them. Empty: every actor.
    pub actors: Vec<String>,
    /// Fold chatter (on by default in the CLI).
    pub fold: bool,
}

/// Parses a time as the CLI takes it: `1.5s`, `250ms`, `800us`, or a bare number of ms.
pub fn parse_time(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else {
        (s, 1e3)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a time (1.5s, 250ms, 800us, or ms)"))?;
    if value < 0.0 || !value.is_finite() {
        return Err(format!("`{s}`: times count from the trace's start"));
    }
    Ok((value * scale) as u64)
}

/// One line of the diagram: an event, or a fold of several.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub t_us: u64,
    pub from: String,
    pub to: String,
    pub cat: Category,
    /// Drawn as a note over `from` (a decision, a state change, a failed exchange) rather
    /// than an arrow.
    pub note: bool,
    /// A request that never got an answer from its peer (the link failed): drawn crossed.
    pub lost: bool,
    pub response: bool,
    pub label: String,
    /// How many events the line stands for (1 unless folded).
    pub count: usize,
}

/// Renames `session:<id>` actors to the broker whose session it is.
pub fn resolve_sessions(events: &mut [Event]) {
    let mut owners: HashMap<String, String> = HashMap::new();
    for e in events.iter() {
        if e.cat == Category::Meta && e.kind == "SessionBound" {
            owners.insert(e.from.clone(), e.to.clone());
        }
        if e.cat == Category::Coord && e.kind == "create" && e.from.starts_with("session:") {
            if let Some(id) = e
                .path
                .as_deref()
                .and_then(|p| p.strip_prefix("/brokers/ids/"))
                .and_then(|id| id.parse::<i32>().ok())
            {
                owners.insert(e.from.clone(), actor::broker(id));
            }
        }
    }
    if owners.is_empty() {
        return;
    }
    for e in events.iter_mut() {
        if let Some(owner) = owners.get(&e.from) {
            e.from = owner.clone();
        }
        if let Some(owner) = owners.get(&e.to) {
            e.to = owner.clone();
        }
    }
}

fn actor_matches(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => p == name,
    })
}

/// The events `view` keeps, in order.
pub fn select(events: &[Event], view: &View) -> Vec<Event> {
    let mut events = events.to_vec();
    resolve_sessions(&mut events);
    events.retain(|e| e.cat != Category::Meta);
    let mut kept_requests: HashSet<u64> = HashSet::new();
    let mut out = Vec::new();
    for e in events {
        if view.from_us.is_some_and(|t| e.t_us < t) || view.to_us.is_some_and(|t| e.t_us > t) {
            continue;
        }
        let both_ends_shown =
            actor_matches(&view.actors, &e.from) && actor_matches(&view.actors, &e.to);
        if !view.actors.is_empty() && !both_ends_shown {
            continue;
        }
        if let Some(topic) = &view.topic {
            let answers_kept = e.reply_to.is_some_and(|r| kept_requests.contains(&r));
            if !(e.mentions(topic, view.partition) || answers_kept || e.cat == Category::Fault) {
                continue;
            }
        }
        if let Some(id) = e.id {
            kept_requests.insert(id);
        }
        out.push(e);
    }
    out
}

/// Fetches and heartbeats that went as usual: no error, no records carried.
fn is_chatter(e: &Event) -> bool {
    CHATTER.contains(&e.kind.as_str())
        && e.error.is_none()
        && !(e.is_response() && e.detail.as_deref().is_some_and(|d| d.contains("bytes")))
}

/// A folded line's link: (from, to, kind, is a response).
type FoldKey = (String, String, String, bool);

/// The diagram's lines for `events` (already selected), chatter folded when `fold`.
///
/// Chatter is folded per poller (the follower or client that keeps asking): repeated
/// fetches or heartbeats on one link become one line, drawn where the first was, with a
/// count, until the poller takes part in anything else (a fetch that brings records, an
/// error, a role change, a new request), after which its chatter starts a new line. So
/// each folded line sits between the events that explain it.
pub fn lines(events: &[Event], fold: bool) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    let is_lost = |e: &Event| {
        e.is_response()
            && e.error
                .as_deref()
                .is_some_and(|err| crate::observe::seam::TRANSPORT_ERRORS.contains(&err))
    };
    let lost: HashSet<u64> = events
        .iter()
        .filter(|e| is_lost(e))
        .filter_map(|e| e.reply_to)
        .collect();
    // Open folds: (from, to, kind, response) → (index in `out`, poller).
    let mut open: Vec<(FoldKey, usize, String)> = Vec::new();
    for e in events {
        let line = if is_lost(e) {
            // No answer came: a note over the sender says what it saw.
            Line {
                t_us: e.t_us,
                from: e.to.clone(),
                to: e.to.clone(),
                cat: e.cat,
                note: true,
                lost: false,
                response: true,
                label: format!(
                    "{} to {}: {}",
                    e.kind,
                    e.from,
                    e.detail
                        .clone()
                        .or_else(|| e.error.clone())
                        .unwrap_or_default()
                ),
                count: 1,
            }
        } else {
            Line {
                t_us: e.t_us,
                from: e.from.clone(),
                to: e.to.clone(),
                cat: e.cat,
                note: e.is_note() && e.id.is_none() && e.reply_to.is_none(),
                lost: e.id.is_some_and(|id| lost.contains(&id)),
                response: e.is_response(),
                label: label(e),
                count: 1,
            }
        };
        if fold && is_chatter(e) && !line.lost {
            let key = (
                e.from.clone(),
                e.to.clone(),
                e.kind.clone(),
                e.is_response(),
            );
            if let Some((_, at, _)) = open.iter().find(|(k, _, _)| *k == key) {
                let folded = &mut out[*at];
                folded.count += 1;
                // A folded line shows what the chatter amounts to, not one exchange.
                folded.label = if folded.response {
                    format!("{} response", e.kind)
                } else {
                    e.kind.clone()
                };
                continue;
            }
            let poller = if e.is_response() { &e.to } else { &e.from };
            open.push((key, out.len(), poller.clone()));
            out.push(line);
            continue;
        }
        // The poller did something else: its chatter from here on is a new line.
        open.retain(|(_, _, poller)| *poller != line.from && *poller != line.to);
        out.push(line);
    }
    for line in &mut out {
        if line.count > 1 {
            line.label = format!("{} ×{}", line.label, line.count);
        }
    }
    out
}

/// The text of one event's arrow or note.
pub fn label(e: &Event) -> String {
    let mut parts: Vec<String> = vec![e.kind.clone()];
    if let Some(path) = &e.path {
        parts.push(path.clone());
    }
    match (&e.topic, e.partition) {
        (Some(t), Some(p)) => parts.push(format!("{t}-{p}")),
        _ if !e.partitions.is_empty() => {
            if e.partitions.len() <= 3 {
                parts.push(e.partitions.join(", "));
            } else {
                let topic = e
                    .topic
                    .as_deref()
                    .map(|t| format!(" of {t}"))
                    .unwrap_or_default();
                parts.push(format!("{} partitions{topic}", e.partitions.len()));
            }
        }
        (Some(t), None) => parts.push(t.clone()),
        _ => {}
    }
    if let Some(l) = e.leader {
        parts.push(format!("leader {l}"));
    }
    if let Some(ep) = e.leader_epoch {
        parts.push(format!("epoch {ep}"));
    }
    if let Some(isr) = &e.isr {
        let isr: Vec<String> = isr.iter().map(i32::to_string).collect();
        parts.push(format!("ISR [{}]", isr.join(",")));
    }
    if let Some(ce) = e.controller_epoch {
        parts.push(format!("controller epoch {ce}"));
    }
    if let Some(o) = e.offset {
        parts.push(format!("offset {o}"));
    }
    if let Some(h) = e.hwm {
        parts.push(format!("HWM {h}"));
    }
    if let Some(l) = e.leo {
        parts.push(format!("LEO {l}"));
    }
    if let Some(d) = &e.detail {
        parts.push(d.clone());
    }
    if e.is_response() {
        parts.push(e.error.clone().unwrap_or_else(|| "ok".into()));
    } else if let Some(err) = &e.error {
        parts.push(err.clone());
    }
    parts.join(" ")
}

/// A participant's name as people read it.
fn display_name(actor: &str) -> String {
    if let Some(id) = actor::broker_id(actor) {
        return format!("broker {id}");
    }
    match actor {
        actor::COORD => "coordination".into(),
        actor::CONSOLE => "fault console".into(),
        other => other.replace(':', " "),
    }
}

/// Participants in reading order: clients, the console, brokers by id, coordination.
fn participants(lines: &[Line]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for l in lines {
        for a in [&l.from, &l.to] {
            if !seen.contains(a) {
                seen.push(a.clone());
            }
        }
    }
    let rank = |a: &str| -> (u8, i64) {
        if a.starts_with("client") {
            (0, 0)
        } else if a == actor::CONSOLE {
            (1, 0)
        } else if let Some(id) = actor::broker_id(a) {
            (2, i64::from(id))
        } else if a == actor::COORD {
            (4, 0)
        } else {
            (3, 0)
        }
    };
    // A stable sort keeps clients (and unknown actors) in order of first appearance.
    seen.sort_by_key(|a| rank(a));
    seen
}

fn mermaid_id(actor: &str) -> String {
    actor
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Mermaid message text: no statement separators, no entity codes, one line.
fn mermaid_text(s: &str) -> String {
    s.replace(';', ",")
        .replace('#', "no. ")
        .replace(['\n', '\r'], " ")
}

/// A Mermaid `sequenceDiagram`.
pub fn mermaid(lines: &[Line]) -> String {
    let mut out = String::from("sequenceDiagram\n");
    for p in participants(lines) {
        let _ = writeln!(
            out,
            "    participant {} as {}",
            mermaid_id(&p),
            display_name(&p)
        );
    }
    for l in lines {
        let (from, to) = (mermaid_id(&l.from), mermaid_id(&l.to));
        let text = mermaid_text(&l.label);
        if l.note {
            let _ = writeln!(out, "    Note over {from}: {text}");
        } else {
            let arrow = match (l.response, l.cat) {
                _ if l.lost => "-x",
                (true, _) => "-->>",
                // One-way: a fired watch, a fault.
                (false, Category::Watch | Category::Fault) => "-)",
                _ => "->>",
            };
            let _ = writeln!(out, "    {from}{arrow}{to}: {text}");
        }
    }
    out
}

/// Aligned text, one line per arrow or note, with the time in ms.
pub fn text(lines: &[Line]) -> String {
    let width = lines
        .iter()
        .map(|l| l.from.len() + l.to.len() + 4)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for l in lines {
        let ends = if l.note {
            format!("[{}]", l.from)
        } else if l.response {
            format!("{} <- {}", l.to, l.from)
        } else if l.lost {
            format!("{} -x {}", l.from, l.to)
        } else {
            format!("{} -> {}", l.from, l.to)
        };
        let _ = writeln!(
            out,
            "{:>10.3} ms  {ends:<width$}  {}",
            l.t_us as f64 / 1000.0,
            l.label
        );
    }
    out
}

/// Selects, folds and draws.
pub fn render(events: &[Event], view: &View, format: Format) -> String {
    let lines = lines(&select(events, view), view.fold);
    match format {
        Format::Mermaid => mermaid(&lines),
        Format::Text => text(&lines),
    }
}

/// How many events of each category a trace holds (for summaries).
pub fn census(events: &[Event]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for e in events {
        *counts.entry(e.cat.name()).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, cat: Category, from: &str, to: &str, kind: &str) -> Event {
        let mut e = Event::new(cat, from, to, kind);
        e.seq = seq;
        e.t_us = seq * 1000;
        e
    }

    fn request(seq: u64, id: u64, from: &str, to: &str, kind: &str) -> Event {
        let mut e = ev(seq, Category::Seam, from, to, kind);
        e.id = Some(id);
        e
    }

    fn response(seq: u64, id: u64, from: &str, to: &str, kind: &str) -> Event {
        let mut e = ev(seq, Category::Seam, from, to, kind);
        e.reply_to = Some(id);
        e
    }

    #[test]
    fn repeated_fetches_fold_into_one_line_with_a_count() {
        let mut events = Vec::new();
        let mut seq = 0;
        for i in 0..5 {
            events.push(request(seq, 100 + i, "b2", "b1", "ReplicaFetch"));
            seq += 1;
            events.push(response(seq, 100 + i, "b1", "b2", "ReplicaFetch"));
            seq += 1;
        }
        events.push(request(seq, 1, "b1", "b2", "LeaderAndIsr"));
        events.push(request(seq + 1, 200, "b2", "b1", "ReplicaFetch"));
        let lines = lines(&events, true);
        let labels: Vec<&str> = lines.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "ReplicaFetch ×5",
                "ReplicaFetch response ×5",
                "LeaderAndIsr",
                "ReplicaFetch"
            ]
        );
        let unfolded = super::lines(&events, false);
        assert_eq!(unfolded.len(), events.len());
    }

    #[test]
    fn sessions_take_the_name_of_the_broker_that_registered_through_them() {
        let mut early = ev(0, Category::Coord, "session:1a", "coord", "create");
        early.path = Some("/brokers".into());
        let mut register = ev(1, Category::Coord, "session:1a", "coord", "create");
        register.path = Some("/brokers/ids/3".into());
        let mut answer = ev(2, Category::Coord, "coord", "session:1a", "create");
        answer.reply_to = Some(1);
        let mut events = vec![early, register, answer];
        resolve_sessions(&mut events);
        assert!(events.iter().all(|e| e.from == "b3" || e.to == "b3"));
    }

    #[test]
    fn a_topic_view_keeps_its_events_their_responses_and_faults() {
        let mut lai = request(0, 7, "b1", "b2", "LeaderAndIsr").with_partitions([("orders", 0)]);
        lai.leader = Some(1);
        let answer = response(1, 7, "b2", "b1", "LeaderAndIsr");
        let other = request(2, 8, "b1", "b2", "LeaderAndIsr").with_partitions([("audit", 0)]);
        let crash = ev(3, Category::Fault, "console", "b2", "crash");
        let events = vec![lai, answer, other, crash];
        let view = View {
            topic: Some("orders".into()),
            ..Default::default()
        };
        let kept: Vec<u64> = select(&events, &view).iter().map(|e| e.seq).collect();
        assert_eq!(kept, [0, 1, 3]);
    }

    #[test]
    fn windows_and_actor_lists_narrow_the_view() {
        let events = vec![
            request(0, 1, "b1", "b2", "LeaderAndIsr"),
            request(5, 2, "b1", "coord", "create"),
            request(9, 3, "b1", "b3", "UpdateMetadata"),
        ];
        let view = View {
            from_us: Some(parse_time("1ms").unwrap()),
            to_us: Some(parse_time("8").unwrap()),
            ..Default::default()
        };
        assert_eq!(select(&events, &view).len(), 1);
        let view = View {
            actors: vec!["b*".into()],
            ..Default::default()
        };
        assert_eq!(select(&events, &view).len(), 2);
    }

    #[test]
    fn mermaid_output_declares_participants_and_draws_responses_dashed() {
        let mut created = request(0, 1, "client:admin", "b2", "CreateTopics");
        created.cat = Category::Client;
        created.topic = Some("orders".into());
        let mut done = response(1, 1, "b2", "client:admin", "CreateTopics");
        done.cat = Category::Client;
        let mut elected = ev(2, Category::Controller, "b1", "b1", "ControllerElected");
        elected.controller_epoch = Some(1);
        let crash = ev(3, Category::Fault, "console", "b2", "crash");
        let diagram = render(
            &[created, done, elected, crash],
            &View::default(),
            Format::Mermaid,
        );
        assert_eq!(
            diagram,
            "sequenceDiagram\n\
             \x20   participant client_admin as client admin\n\
             \x20   participant console as fault console\n\
             \x20   participant b1 as broker 1\n\
             \x20   participant b2 as broker 2\n\
             \x20   client_admin->>b2: CreateTopics orders\n\
             \x20   b2-->>client_admin: CreateTopics ok\n\
             \x20   Note over b1: ControllerElected controller epoch 1\n\
             \x20   console-)b2: crash\n"
        );
    }

    #[test]
    fn times_parse_with_units() {
        assert_eq!(parse_time("1.5s"), Ok(1_500_000));
        assert_eq!(parse_time("250ms"), Ok(250_000));
        assert_eq!(parse_time("800us"), Ok(800));
        assert_eq!(parse_time("12"), Ok(12_000));
        assert!(parse_time("soon").is_err());
        assert!(parse_time("-1").is_err());
    }
}

//! `--trace-filter EXPR`: which events a trace keeps, decided when an event is emitted (so a
//! filtered-out event costs no rate budget and no disk).
//!
//! An expression is terms separated by spaces; an event is kept when every term holds. A term
//! is `key=values` or `key!=values`, `values` being alternatives separated by `|` (or `,`),
//! each matched exactly or, ending in `*`, as a prefix.
//!
//! | key | matches |
//! |---|---|
//! | `cat` | the category: `seam`, `coord`, `watch`, `controller`, `client`, `replica`, `fault`, `meta` |
//! | `kind` | the message kind (`LeaderAndIsr`, `Produce`, `create`, …) |
//! | `from`, `to` | an actor (`b1`, `coord`, `client:rdkafka`, …) |
//! | `actor` | either end |
//! | `topic` | the event's topic, or any of its `partitions`' topics; an event without a topic does not match |
//! | `partition` | the event's partition, or any of its `partitions`' numbers |
//!
//! Examples: `cat!=client` (the cluster's inner workings only), `kind!=ReplicaFetch|Fetch|Heartbeat`
//! (no chatter), `topic=orders cat=seam|controller|replica`. `meta` events (the trace's own
//! start, drop counts and end) are always kept.

use super::event::{Category, Event};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Cat,
    Kind,
    From,
    To,
    Actor,
    Topic,
    Partition,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    key: Key,
    negated: bool,
    values: Vec<String>,
}

/// A parsed filter; the empty filter keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    terms: Vec<Term>,
    /// The expression as written, for the trace's start marker.
    source: String,
}

fn value_matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

impl Filter {
    pub fn parse(expr: &str) -> Result<Filter, String> {
        let mut terms = Vec::new();
        for word in expr.split_whitespace() {
            let (key, negated, values) = if let Some((k, v)) = word.split_once("!=") {
                (k, true, v)
            } else if let Some((k, v)) = word.split_once('=') {
                (k, false, v)
            } else {
                return Err(format!("`{word}`: expected key=value or key!=value"));
            };
            let key = match key {
                "cat" => Key::Cat,
                "kind" => Key::Kind,
                "from" => Key::From,
                "to" => Key::To,
                "actor" => Key::Actor,
                "topic" => Key::Topic,
                "partition" => Key::Partition,
                other => {
                    return Err(format!(
                    "`{other}` is not a filter key (cat, kind, from, to, actor, topic, partition)"
                ))
                }
            };
            let values: Vec<String> = values
                .split(['|', ','])
                .filter(|v| !v.is_empty())
                .map(String::from)
                .collect();
            if values.is_empty() {
                return Err(format!("`{word}`: no value"));
            }
            if key == Key::Cat {
                for v in &values {
                    if !Category::ALL.iter().any(|c| value_matches(v, c.name())) {
                        return Err(format!("`{v}` is not a category"));
                    }
                }
            }
            if key == Key::Partition {
                for v in &values {
                    if v.parse::<i32>().is_err() {
                        return Err(format!("`{v}` is not a partition number"));
                    }
                }
            }
            terms.push(Term {
                key,
                negated,
                values,
            });
        }
        Ok(Filter {
            terms,
            source: expr.trim().to_string(),
        })
    }

    /// The expression it was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether the trace keeps `event`.
    pub fn keeps(&self, event: &Event) -> bool {
        if event.cat == Category::Meta {
            return true;
        }
        self.terms.iter().all(|term| {
            let any = |candidates: &[&str]| {
                term.values
                    .iter()
                    .any(|v| candidates.iter().any(|c| value_matches(v, c)))
            };
            let hit = match term.key {
                Key::Cat => any(&[event.cat.name()]),
                Key::Kind => any(&[&event.kind]),
                Key::From => any(&[&event.from]),
                Key::To => any(&[&event.to]),
                Key::Actor => any(&[&event.from, &event.to]),
                Key::Topic => {
                    let mut topics: Vec<&str> = event.topic.iter().map(String::as_str).collect();
                    topics.extend(
                        event
                            .partitions
                            .iter()
                            .filter_map(|tp| tp.rsplit_once('-').map(|(t, _)| t)),
                    );
                    any(&topics)
                }
                Key::Partition => {
                    let mut parts: Vec<String> =
                        event.partition.iter().map(|p| p.to_string()).collect();
                    parts.extend(
                        event
                            .partitions
                            .iter()
                            .filter_map(|tp| tp.rsplit_once('-').map(|(_, p)| p.to_string())),
                    );
                    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
                    any(&refs)
                }
            };
            hit != term.negated
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(cat: Category, from: &str, to: &str, kind: &str) -> Event {
        Event::new(cat, from, to, kind)
    }

    #[test]
    fn every_term_must_hold() {
        let f = Filter::parse("cat=seam|controller kind!=ReplicaFetch").unwrap();
        assert!(f.keeps(&event(Category::Seam, "b1", "b2", "LeaderAndIsr")));
        assert!(!f.keeps(&event(Category::Seam, "b2", "b1", "ReplicaFetch")));
        assert!(!f.keeps(&event(Category::Client, "client", "b1", "Produce")));
        assert!(f.keeps(&event(
            Category::Controller,
            "b1",
            "b1",
            "ControllerElected"
        )));
    }

    #[test]
    fn topic_and_partition_match_single_and_listed_partitions() {
        let f = Filter::parse("topic=orders partition=1").unwrap();
        let one =
            event(Category::Seam, "b1", "b2", "LeaderAndIsr").with_partitions([("orders", 1)]);
        let many = event(Category::Seam, "b1", "b2", "LeaderAndIsr")
            .with_partitions([("orders", 0), ("orders", 1)]);
        let other =
            event(Category::Seam, "b1", "b2", "LeaderAndIsr").with_partitions([("orders", 0)]);
        let none = event(Category::Controller, "b1", "b1", "ControllerElected");
        assert!(f.keeps(&one));
        assert!(f.keeps(&many));
        assert!(!f.keeps(&other));
        assert!(
            !f.keeps(&none),
            "an event without a topic does not match topic="
        );
    }

    #[test]
    fn prefixes_and_actor_match_either_end() {
        let f = Filter::parse("actor=client:*").unwrap();
        assert!(f.keeps(&event(Category::Client, "client:rdkafka", "b1", "Produce")));
        assert!(f.keeps(&event(Category::Client, "b1", "client:rdkafka", "Produce")));
        assert!(!f.keeps(&event(Category::Seam, "b1", "b2", "LeaderAndIsr")));
    }

    #[test]
    fn meta_events_are_always_kept() {
        let f = Filter::parse("cat=seam").unwrap();
        assert!(f.keeps(&event(Category::Meta, "trace", "trace", "TraceDropped")));
    }

    #[test]
    fn bad_expressions_say_why() {
        for (expr, why) in [
            ("cat", "expected key=value"),
            ("colour=red", "not a filter key"),
            ("cat=seem", "not a category"),
            ("partition=x", "not a partition number"),
            ("kind=", "no value"),
        ] {
            let err = Filter::parse(expr).unwrap_err();
            assert!(err.contains(why), "{expr}: {err}");
        }
        assert!(Filter::parse("").unwrap().is_empty());
    }
}

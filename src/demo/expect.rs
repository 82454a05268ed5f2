//! What a diagram must show: the messages a case of the seed names, in order, written as
//! patterns over the diagram's lines and checked as a subsequence (other lines may come
//! between).
//!
//! A pattern is `FROM -> TO : LABEL` for an arrow or `ACTOR : LABEL` for a note. An actor is
//! a name (`coord`, `client:admin`), `@role` (bound by the scenario as it runs: `@controller`,
//! `@leader`, …), a prefix ending in `*` (`b*`), or `*`. LABEL is a glob over the line's whole
//! text, `*` standing for anything (`Produce*NOT_LEADER_OR_FOLLOWER`, `LeaderAndIsr*`).

use std::collections::BTreeMap;

use crate::trace::render::Line;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub from: String,
    pub to: String,
    pub label: String,
    /// The pattern as written.
    pub text: String,
}

impl Expect {
    pub fn parse(text: &str) -> Result<Expect, String> {
        let (ends, label) = text
            .split_once(" : ")
            .ok_or_else(|| format!("`{text}`: expected `FROM -> TO : LABEL` or `ACTOR : LABEL`"))?;
        let (from, to) = match ends.split_once("->") {
            Some((f, t)) => (f.trim(), t.trim()),
            None => (ends.trim(), ends.trim()),
        };
        Ok(Expect {
            from: from.to_string(),
            to: to.to_string(),
            label: label.trim().to_string(),
            text: text.to_string(),
        })
    }

    fn actor_matches(pattern: &str, actor: &str, roles: &BTreeMap<String, String>) -> bool {
        if pattern == "*" {
            return true;
        }
        if let Some(role) = pattern.strip_prefix('@') {
            return roles.get(role).is_some_and(|a| a == actor);
        }
        match pattern.strip_suffix('*') {
            Some(prefix) => actor.starts_with(prefix),
            None => pattern == actor,
        }
    }

    /// Whether `line` is what this pattern names.
    pub fn matches(&self, line: &Line, roles: &BTreeMap<String, String>) -> bool {
        let is_note = self.from == self.to && !self.from.contains('*');
        if is_note != line.note {
            return false;
        }
        Self::actor_matches(&self.from, &line.from, roles)
            && Self::actor_matches(&self.to, &line.to, roles)
            && glob(&self.label, &line.label)
    }
}

/// A shell-style glob: `*` matches anything, everything else literally, the whole text.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == text;
    }
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Checks that `expected` appear in `lines` in order; the error names the first one missing
/// and the last one found.
pub fn check(
    lines: &[Line],
    expected: &[&str],
    roles: &BTreeMap<String, String>,
) -> Result<(), String> {
    let mut at = 0;
    let mut found: Option<String> = None;
    for text in expected {
        let e = Expect::parse(text)?;
        match lines[at..].iter().position(|l| e.matches(l, roles)) {
            Some(i) => {
                at += i + 1;
                found = Some(e.text.clone());
            }
            None => {
                return Err(match found {
                    Some(last) => format!("`{}` does not follow `{last}`", e.text),
                    None => format!("`{}` is missing", e.text),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Category;

    fn line(from: &str, to: &str, label: &str) -> Line {
        Line {
            t_us: 0,
            from: from.into(),
            to: to.into(),
            cat: Category::Seam,
            note: from == to,
            lost: false,
            response: false,
            label: label.into(),
            count: 1,
        }
    }

    #[test]
    fn patterns_match_arrows_notes_roles_and_globs() {
        let roles: BTreeMap<String, String> = [("controller".to_string(), "b2".to_string())].into();
        let lines = vec![
            line(
                "client:admin",
                "b1",
                "CreateTopics orders 3 partitions, RF 3",
            ),
            line("b1", "b2", "CreateTopics orders"),
            line("b2", "b2", "PlaceReplicas orders 0→[2,3,1]"),
            line("b2", "b3", "LeaderAndIsr orders-0 leader 2"),
        ];
        assert!(glob("create /brokers", "create /brokers"));
        assert!(!glob("create /brokers", "create /brokers/ids/1 ephemeral"));
        assert!(glob(
            "create /brokers/ids/*ephemeral",
            "create /brokers/ids/1 ephemeral"
        ));
        let expected = [
            "client:admin -> b* : CreateTopics orders*RF 3",
            "* -> @controller : CreateTopics*",
            "@controller : PlaceReplicas*",
            "@controller -> * : LeaderAndIsr*",
        ];
        assert_eq!(check(&lines, &expected, &roles), Ok(()));
        let out_of_order = [
            "@controller -> * : LeaderAndIsr*",
            "@controller : PlaceReplicas*",
        ];
        assert!(check(&lines, &out_of_order, &roles)
            .unwrap_err()
            .contains("does not follow"));
        assert!(check(&lines, &["@leader : PlaceReplicas*"], &roles).is_err());
        // A note pattern does not match an arrow.
        assert!(check(&lines, &["b1 : CreateTopics*"], &roles).is_err());
    }
}

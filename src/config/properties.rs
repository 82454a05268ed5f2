//! Java's `.properties` format, as `java.util.Properties.load` reads it, so that a user's
//! Kafka `server.properties` parses here exactly as it does for Kafka.

use std::path::Path;

use indexmap::IndexMap;

/// One parse failure, with the 1-based line it was found on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct PropertiesError {
    pub line: usize,
    pub message: String,
}

/// Reads a properties file; keys keep their file order (later duplicates win, as in Java).
pub fn load_file(path: &Path) -> anyhow::Result<IndexMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
    parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Parses properties text: `#`/`!` comments, `key=value`, `key: value` or `key value`,
/// backslash line continuations and the escapes `\t \n \r \f \uXXXX`.
pub fn parse(text: &str) -> Result<IndexMap<String, String>, PropertiesError> {
    let mut out = IndexMap::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((index, raw)) = lines.next() {
        let first_line = index + 1;
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
            continue;
        }
        // Join continuation lines: an odd number of trailing backslashes continues the line,
        // and the next line's leading whitespace is dropped.
        let mut logical = trimmed.to_string();
        while ends_with_odd_backslashes(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_key_value(&logical);
        let key = unescape(key).map_err(|message| PropertiesError {
            line: first_line,
            message,
        })?;
        let value = unescape(value).map_err(|message| PropertiesError {
            line: first_line,
            message,
        })?;
        out.insert(key, value);
    }
    Ok(out)
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

/// Splits at the first unescaped `=`, `:` or whitespace; a whitespace separator may be
/// followed by one `=` or `:`.
fn split_key_value(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' => return (&line[..i], line[i + 1..].trim_start()),
            b' ' | b'\t' | b'\x0c' => {
                let key = &line[..i];
                let mut rest = line[i..].trim_start();
                if let Some(stripped) = rest.strip_prefix(['=', ':']) {
                    rest = stripped.trim_start();
                }
                return (key, rest);
            }
            _ => i += 1,
        }
    }
    (line, "")
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .ok_or_else(|| format!("malformed \\uxxxx escape: \\u{hex}"))?;
                out.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_separators_java_accepts() {
        let p = parse("a=1\nb: 2\nc 3\nd = 4\ne   :  5\n").unwrap();
        let got: Vec<_> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5")]
        );
    }

    #[test]
    fn skips_comments_and_blank_lines() {
        let p = parse("# comment\n! also\n\n   \nlisteners=PLAINTEXT://:9092\n").unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p["listeners"], "PLAINTEXT://:9092");
    }

    #[test]
    fn joins_continuation_lines_and_unescapes() {
        let p = parse("log.dirs=/a,\\\n    /b\nkey\\ with\\ space=x\\ty\nu=\\u0041\n").unwrap();
        assert_eq!(p["log.dirs"], "/a,/b");
        assert_eq!(p["key with space"], "x\ty");
        assert_eq!(p["u"], "A");
    }

    #[test]
    fn an_even_number_of_backslashes_does_not_continue() {
        let p = parse("a=x\\\\\nb=y\n").unwrap();
        assert_eq!(p["a"], "x\\");
        assert_eq!(p["b"], "y");
    }

    #[test]
    fn later_duplicates_win_and_a_bare_key_is_empty() {
        let p = parse("a=1\na=2\nflag\n").unwrap();
        assert_eq!(p["a"], "2");
        assert_eq!(p["flag"], "");
    }

    #[test]
    fn malformed_unicode_escape_names_its_line() {
        let err = parse("ok=1\nbad=\\u12\n").unwrap_err();
        assert_eq!(err.line, 2);
    }
}

//! `Host()` names in Traefik router rules, v2 (`Host(`a`,`b`)`) and v3 (`Host(`a`) || Host(`b`)`).

/// The arguments of every `Host()` matcher, in order. Other matchers are skipped, and so are
/// names under a negation, since `!Host(`a`)` means "not a". The rule is read once, left to
/// right, so work is linear in its length.
pub fn hosts(rule: &str) -> Result<Vec<String>, String> {
    let b = rule.as_bytes();
    let mut out = Vec::new();
    // One entry per open parenthesis: whether the group is negated (itself or by a parent).
    let mut groups: Vec<bool> = Vec::new();
    let mut negate_next = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'`' | b'"' => {
                // A quoted string outside a Host() matcher: skip it whole, so text such as
                // PathPrefix(`/Host(`) is not mistaken for a matcher.
                i = skip_string(b, i)?;
                negate_next = false;
            }
            b'!' => {
                negate_next = true;
                i += 1;
            }
            b'(' => {
                let parent = groups.last().copied().unwrap_or(false);
                groups.push(parent || negate_next);
                negate_next = false;
                i += 1;
            }
            b')' => {
                groups.pop();
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let ident = &rule[start..i];
                let negated = negate_next || groups.last().copied().unwrap_or(false);
                negate_next = false;
                let mut j = i;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j < b.len() && b[j] == b'(' {
                    let (args, end) = arguments(rule, j)?;
                    if ident == "Host" {
                        if args.is_empty() {
                            return Err("Host() has no argument".into());
                        }
                        if !negated {
                            out.extend(args);
                        }
                    }
                    i = end;
                }
            }
            _ => i += 1,
        }
    }
    Ok(out)
}

/// Reads `(arg, arg, …)` starting at the `(` at `open`: the quoted strings and the index after `)`.
fn arguments(rule: &str, open: usize) -> Result<(Vec<String>, usize), String> {
    let b = rule.as_bytes();
    let mut args = Vec::new();
    let mut i = open + 1;
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
            i += 1;
        }
        match b.get(i) {
            None => return Err("a matcher's '(' is never closed".into()),
            Some(b')') => return Ok((args, i + 1)),
            Some(b'`' | b'"') => {
                let end = skip_string(b, i)?;
                args.push(rule[i + 1..end - 1].to_string());
                i = end;
            }
            Some(_) => {
                return Err(
                    "matcher arguments must be strings in backticks or double quotes".into(),
                );
            }
        }
    }
}

/// Index just after the string that opens at `start`. Backtick strings have no escapes;
/// in double-quoted ones a backslash escapes the next byte, as in Go.
fn skip_string(b: &[u8], start: usize) -> Result<usize, String> {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == quote {
            return Ok(i + 1);
        }
        i += if quote == b'"' && b[i] == b'\\' { 2 } else { 1 };
    }
    Err("a quoted string is never closed".into())
}

//! The page's escaping and its time-left text.

use std::collections::HashMap;

use super::*;

fn blank() -> StatusEntry {
    StatusEntry::default()
}

#[test]
fn names_and_errors_from_labels_are_escaped() {
    let hostile = "<script>alert(1)</script>";
    let view = StatusView {
        generated_at: "now".into(),
        certificates: vec![StatusEntry {
            name: "web".into(),
            container: Some(format!("c\"{hostile}")),
            error: Some(hostile.into()),
            ..blank()
        }],
        ca: vec![],
        agents: vec![],
        events: vec![],
        not_before: HashMap::new(),
    };
    let html = status(&view, None, "n0nce", OffsetDateTime::UNIX_EPOCH);
    assert!(!html.contains(hostile), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the page's own script"
    );
    assert!(html.contains("<script nonce=\"n0nce\">"), "{html}");
}

#[test]
fn time_left_reads_in_days_hours_or_minutes() {
    assert_eq!(span(3 * 86_400 + 4 * 3600), "3d 4h");
    assert_eq!(span(5 * 3600 + 12 * 60), "5h 12m");
    assert_eq!(span(30), "1m");
    assert_eq!(span(0), "expired");
}

/// A `#rrggbb` colour: a `--name` of the page's `:root`, or a literal.
fn colour(name: &str) -> [f64; 3] {
    let hex = if let Some(var) = name.strip_prefix("--") {
        let decl = format!("--{var}:");
        let at = CSS
            .find(&decl)
            .unwrap_or_else(|| panic!("{decl} in page.css"));
        &CSS[at + decl.len()..at + decl.len() + 7]
    } else {
        name
    };
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap();
    [byte(1), byte(3), byte(5)].map(|b| f64::from(b) / 255.0)
}

/// WCAG 2.x contrast ratio of two colours.
fn contrast(a: &str, b: &str) -> f64 {
    let luminance = |c: [f64; 3]| {
        let lin = |v: f64| {
            if v <= 0.039_28 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2])
    };
    let (la, lb) = (luminance(colour(a)), luminance(colour(b)));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

#[test]
fn every_text_colour_meets_wcag_aa_on_its_background() {
    // (text, background): body text, muted, error, ok and warning on white and on the table
    // heads' band; the header's title, time and button on its dark band.
    let pairs = [
        ("--fg", "--bg"),
        ("--muted", "--bg"),
        ("--bad", "--bg"),
        ("--ok", "--bg"),
        ("--warn", "--bg"),
        ("--fg", "--band"),
        ("--muted", "--band"),
        ("#ffffff", "--head"),
        ("#e5e7eb", "--head"),
    ];
    for (text, background) in pairs {
        let ratio = contrast(text, background);
        assert!(ratio >= 4.5, "{text} on {background}: {ratio:.2}");
    }
}

//! The page's escaping and its time-left text.

use std::collections::HashMap;

use super::*;

fn blank() -> StatusEntry {
    StatusEntry {
        name: String::new(),
        container: None,
        sans: vec![],
        usage: None,
        serial: None,
        not_after: None,
        next_renewal: None,
        error: None,
        groups: vec![],
        allow: None,
        middleware: None,
    }
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

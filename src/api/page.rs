//! The HTML of `GET /ui` and of its login form: escaped text, inline style and script only.

use std::fmt::Write;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::session::Session;
use super::status::StatusView;
use crate::store::status::StatusEntry;

const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

/// Text made safe for HTML content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn head(title: &str, nonce: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{}</title><style nonce=\"{nonce}\">{CSS}</style></head>",
        escape(title)
    )
}

/// The login form, with why the last attempt failed (`None`: nothing was presented).
pub fn login(failure: Option<&str>, nonce: &str) -> String {
    let mut out = head("certdock: log in", nonce);
    out.push_str(
        "<body><header><h1>certdock</h1></header><main class=\"login\">\
         <h2>Log in</h2>\
         <p>Paste an <strong>admin</strong> token (<code>certdock token create --kind admin \
         --name YOU --ttl 5m</code>). It is spent: you get a session for 8 hours.</p>",
    );
    if let Some(why) = failure {
        let _ = write!(out, "<p class=\"err\" role=\"alert\">{}</p>", escape(why));
    }
    out.push_str(
        "<form method=\"post\" action=\"/ui/login\">\
         <label for=\"token\">Admin token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required>\
         <button type=\"submit\">Log in</button></form></main></body></html>",
    );
    out
}

/// `3d 4h`, `5h 12m`, `40m`, or `expired`.
fn span(secs: i64) -> String {
    if secs <= 0 {
        return "expired".into();
    }
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h) {
        (0, 0) => format!("{}m", m.max(1)),
        (0, h) => format!("{h}h {m}m"),
        (d, h) => format!("{d}d {h}h"),
    }
}

fn time_cell(t: Option<OffsetDateTime>) -> String {
    match t {
        Some(t) => escape(
            &t.replace_nanosecond(0)
                .unwrap_or(t)
                .format(&Rfc3339)
                .unwrap_or_default(),
        ),
        None => "<span class=\"none\">-</span>".into(),
    }
}

/// A `<td>` with the label narrow screens show above its value.
fn td(out: &mut String, label: &str, class: &str, html: &str) {
    let _ = write!(
        out,
        "<td data-label=\"{label}\" class=\"{class}\">{html}</td>"
    );
}

fn table_head(out: &mut String, id: &str, title: &str, columns: &[&str]) {
    let _ = write!(
        out,
        "<section aria-labelledby=\"{id}\"><h2 id=\"{id}\">{title}</h2><table><thead><tr>"
    );
    for c in columns {
        let _ = write!(out, "<th scope=\"col\">{c}</th>");
    }
    out.push_str("</tr></thead><tbody>");
}

const TABLE_END: &str = "</tbody></table></section>";

/// The one row of an empty table, so an empty section says so.
fn empty(out: &mut String, rows: usize, columns: usize, text: &str) {
    if rows == 0 {
        let _ = write!(
            out,
            "<tr><td colspan=\"{columns}\" class=\"none\">{text}</td></tr>"
        );
    }
}

/// The time left as a bar (`<meter>`: no inline style) and as text.
fn time_left(view: &StatusView, e: &StatusEntry, now: OffsetDateTime) -> String {
    let Some(not_after) = e.not_after else {
        return "<span class=\"none\">-</span>".into();
    };
    let left = (not_after - now).whole_seconds();
    let start = e.serial.as_ref().and_then(|s| view.not_before.get(s));
    let percent = start
        .map(|nb| {
            let total = (not_after.unix_timestamp() - nb).max(1);
            (left.max(0) * 100 / total).min(100)
        })
        .unwrap_or(if left > 0 { 100 } else { 0 });
    // Renewal is due with a third of the lifetime left: above that the bar is green, below
    // it amber (renewal is late), under a fifth red.
    format!(
        "<meter min=\"0\" max=\"100\" low=\"20\" high=\"34\" optimum=\"100\" value=\"{percent}\" \
         aria-label=\"{percent}% of the lifetime left\"></meter> <span class=\"left\">{}</span>",
        span(left)
    )
}

fn certificates(out: &mut String, view: &StatusView, now: OffsetDateTime) {
    table_head(
        out,
        "certs",
        "Certificates",
        &[
            "Name",
            "Container or host",
            "SANs",
            "Usage",
            "Time left",
            "Next renewal",
            "Last error",
        ],
    );
    let rows: Vec<&StatusEntry> = view
        .certificates
        .iter()
        .filter(|e| e.usage.is_some())
        .collect();
    empty(out, rows.len(), 7, "No certificates yet.");
    for e in rows {
        let _ = write!(out, "<tr data-cert=\"{}\">", escape(&e.name));
        td(
            out,
            "Name",
            "",
            &format!("<strong>{}</strong>", escape(&e.name)),
        );
        let host = e.container.as_deref().map_or_else(
            || "<span class=\"none\">host (certdock issue)</span>".to_string(),
            escape,
        );
        td(out, "Container or host", "", &host);
        let sans: Vec<String> = e.sans.iter().map(|s| escape(&s.to_string())).collect();
        td(out, "SANs", "mono", &sans.join(", "));
        let usage = e.usage.map(|u| u.to_string()).unwrap_or_default();
        td(
            out,
            "Usage",
            "",
            &format!("<span class=\"badge\">{}</span>", escape(&usage)),
        );
        td(out, "Time left", "", &time_left(view, e, now));
        td(out, "Next renewal", "", &time_cell(e.next_renewal));
        match &e.error {
            Some(err) => td(out, "Last error", "err", &escape(err)),
            None => td(out, "Last error", "ok", "none"),
        }
        out.push_str("</tr>");
    }
    out.push_str(TABLE_END);
}

fn refused(out: &mut String, view: &StatusView) {
    table_head(
        out,
        "refused",
        "Refused containers",
        &["Name", "Container", "Reason"],
    );
    let rows: Vec<&StatusEntry> = view
        .certificates
        .iter()
        .filter(|e| e.usage.is_none())
        .collect();
    empty(
        out,
        rows.len(),
        3,
        "None: every labelled container was accepted.",
    );
    for e in rows {
        let _ = write!(out, "<tr data-refused=\"{}\">", escape(&e.name));
        td(out, "Name", "", &escape(&e.name));
        td(
            out,
            "Container",
            "",
            &escape(e.container.as_deref().unwrap_or("-")),
        );
        td(
            out,
            "Reason",
            "err",
            &escape(e.error.as_deref().unwrap_or("refused")),
        );
        out.push_str("</tr>");
    }
    out.push_str(TABLE_END);
}

fn chain(out: &mut String, view: &StatusView) {
    table_head(
        out,
        "chain",
        "CA chain",
        &["Role", "Subject", "SHA-256 fingerprint", "Not after"],
    );
    for c in &view.ca {
        out.push_str("<tr>");
        td(out, "Role", "", &c.role);
        td(
            out,
            "Subject",
            "",
            &escape(c.subject.as_deref().unwrap_or("-")),
        );
        td(out, "SHA-256 fingerprint", "mono", &escape(&c.sha256));
        td(out, "Not after", "", &escape(&c.not_after));
        out.push_str("</tr>");
    }
    out.push_str(TABLE_END);
}

fn agents(out: &mut String, view: &StatusView) {
    table_head(
        out,
        "agents",
        "Enrolled agents",
        &["Name", "Scope", "Last renewal", "Not after"],
    );
    empty(out, view.agents.len(), 4, "No agent has enrolled.");
    for a in &view.agents {
        let _ = write!(out, "<tr data-agent=\"{}\">", escape(&a.name));
        td(out, "Name", "", &escape(&a.name));
        let scope = if a.scope.is_empty() {
            "any name the CA allows".to_string()
        } else {
            a.scope.join(", ")
        };
        td(out, "Scope", "mono", &escape(&scope));
        td(out, "Last renewal", "", &escape(&a.last_renewal));
        td(out, "Not after", "", &escape(&a.not_after));
        out.push_str("</tr>");
    }
    out.push_str(TABLE_END);
}

fn events(out: &mut String, view: &StatusView) {
    table_head(
        out,
        "events",
        "Recent events",
        &["When", "What", "Name", "Serial", "Detail"],
    );
    empty(out, view.events.len(), 5, "Nothing has happened yet.");
    for e in &view.events {
        out.push_str("<tr>");
        td(out, "When", "", &escape(&e.at));
        let class = match e.kind {
            "revoked" | "refused" => "err",
            "renewed" => "ok",
            _ => "",
        };
        td(out, "What", class, e.kind);
        td(out, "Name", "", &escape(&e.name));
        td(
            out,
            "Serial",
            "mono",
            &escape(e.serial.as_deref().unwrap_or("-")),
        );
        td(out, "Detail", "", &escape(&e.detail));
        out.push_str("</tr>");
    }
    out.push_str(TABLE_END);
}

/// The status page. A session gets a logout button carrying its CSRF token.
pub fn status(
    view: &StatusView,
    session: Option<&Session>,
    nonce: &str,
    now: OffsetDateTime,
) -> String {
    let mut out = head("certdock status", nonce);
    let _ = write!(
        out,
        "<body><header><h1>certdock</h1><span class=\"meta\">updated \
         <span id=\"generated\">{}</span></span>",
        escape(&view.generated_at)
    );
    if let Some(s) = session {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/ui/logout\"><input type=\"hidden\" name=\"csrf\" \
             value=\"{}\"><button type=\"submit\">Log out</button></form>",
            escape(&s.csrf)
        );
    }
    out.push_str("</header><main>");
    certificates(&mut out, view, now);
    refused(&mut out, view);
    chain(&mut out, view);
    agents(&mut out, view);
    events(&mut out, view);
    let _ = write!(
        out,
        "</main><script nonce=\"{nonce}\">{JS}</script></body></html>"
    );
    out
}

#[cfg(test)]
mod tests;

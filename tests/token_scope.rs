//! Issue 18: a token's scope is checked against the running CA's policy when the token is
//! made, with an error naming both, instead of refusing everything at use.

mod common;

use common::{Serve, certdock, free_port, s};

#[test]
fn a_scope_outside_the_running_cas_policy_is_refused_at_token_create() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let state = d.join("state");
    let _serve = Serve::start_at(d, &state, free_port(), &["--allow-domain", "a.test"]);
    let create = |scope: Option<&str>| {
        let mut args = vec!["token", "create", "--state-dir", s(&state), "--name", "web"];
        if let Some(scope) = scope {
            args.extend(["--allow-domain", scope]);
        }
        certdock(&args)
    };
    let out = create(Some("b.test,x.a.test"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--allow-domain") && err.contains("b.test") && err.contains("a.test"),
        "names the scope and the policy: {err}"
    );
    assert!(!err.contains("x.a.test"), "only what lies outside: {err}");
    for ok_scope in [Some("x.a.test"), Some("a.test"), None] {
        let out = create(ok_scope);
        assert!(
            out.status.success(),
            "{ok_scope:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

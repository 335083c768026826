//! The dashboard over plain HTTP, as scripts and proxies see it: tokens and
//! roles on the JSON API, CSRF on forms, security headers, the trusted
//! header only from trusted proxies, and a worker that refuses to open
//! the dashboard to the network without a way to sign in.

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    support::{Sandbox, assert_no_secret},
    web_support::{
        ADMIN_PASSWORD, Reply, SECRET_KEY, TOKEN, VIEWER_PASSWORD, VIEWER_TOKEN, dashboard_section,
        download, free_port, request, start_worker,
    },
    worker_support::{Namespace, Worker, wait_for},
};

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn assert_security_headers(reply: &Reply) {
    let csp = reply
        .header("content-security-policy")
        .expect("a Content-Security-Policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));
    assert!(reply.header("referrer-policy").is_some());
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
}

#[test]
fn tokens_roles_and_csrf_guard_the_api_and_the_forms() {
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    let port = free_port();
    let section = dashboard_section(&sandbox, port);
    sandbox.config(&format!(
        "{section}\n[database_backup]\ndatabases = [\"sqlite://app.sqlite3\"]\n"
    ));
    let _worker = start_worker(&sandbox, port, "api");
    let get = |path: &str, auth: Option<&str>| {
        let h = auth.map(|a| ("Authorization", a));
        request(port, "GET", path, h.as_slice(), "")
    };

    // Nothing without sign-in: pages send to the sign-in page, the API is 401.
    let page = get("/runs?status=failed", None);
    assert_eq!(page.status, 303, "{page:?}");
    assert_eq!(
        page.header("location"),
        Some("/login?next=%2Fruns%3Fstatus%3Dfailed")
    );
    assert_security_headers(&page);
    assert_eq!(get("/api/runs", None).status, 401);
    assert_eq!(get("/api/runs", Some(&bearer("wrong-token"))).status, 401);
    // Health and metrics stay open for probes and Prometheus, whatever
    // token a scraper sends.
    assert_eq!(get("/healthz", None).status, 200);
    assert_eq!(get("/metrics", None).status, 200);
    assert_eq!(
        get("/metrics", Some(&bearer("a-service-account-token"))).status,
        200
    );

    // A viewer token reads, and may not trigger.
    let viewer = bearer(VIEWER_TOKEN);
    assert_eq!(get("/api/targets", Some(&viewer)).status, 200);
    let refused = request(
        port,
        "POST",
        "/api/trigger/database",
        &[("Authorization", &viewer)],
        "",
    );
    assert_eq!(refused.status, 403, "{refused:?}");

    // An operator token triggers; the run records who asked.
    let operator = bearer(TOKEN);
    let bad = request(
        port,
        "POST",
        "/api/trigger/database?target=nope",
        &[("Authorization", &operator)],
        "",
    );
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.body.contains("nope"), "{}", bad.body);
    let started = request(
        port,
        "POST",
        "/api/trigger/database",
        &[("Authorization", &operator)],
        r#"{"target": "app"}"#,
    );
    assert_eq!(started.status, 202, "{started:?}");
    let jobs: Value = serde_json::from_str(&started.body).expect("json");
    assert_eq!(jobs["jobs"][0]["target"], "app");
    let run = wait_for(
        Duration::from_secs(30),
        "the triggered run to finish",
        || {
            let reply = get("/api/runs?target=app&status=success", Some(&operator));
            let runs: Vec<Value> = serde_json::from_str(&reply.body).ok()?;
            runs.into_iter().next()
        },
    );
    assert_eq!(run["triggered_by"], "token:ci");
    assert_eq!(run["trigger"], "manual");
    let one = get(&format!("/api/runs/{}", run["id"]), Some(&operator));
    assert_eq!(one.status, 200);
    assert_eq!(get("/api/runs/999999999", Some(&operator)).status, 404);
    assert_eq!(
        get("/api/runs?limit=100000000000000000000", Some(&operator)).status,
        400
    );
    // Its artifact downloads, whole, for an operator only; a key that no
    // manifest vouches for is not found.
    let key = run["artifact"].as_str().expect("artifact key");
    let path = format!("/artifacts/download?key={}", key.replace('/', "%2F"));
    let (status, bytes) = download(port, &path, &[("Authorization", &operator)]);
    assert_eq!(status, 200);
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        run["sha256"].as_str().expect("sha")
    );
    assert_eq!(download(port, &path, &[("Authorization", &viewer)]).0, 403);
    for bad in [
        "../backup.toml",
        "%2Fetc%2Fpasswd",
        "database%2Fapp%2F..%2F..%2Fbackup.toml",
    ] {
        let (status, _) = download(
            port,
            &format!("/artifacts/download?key={bad}"),
            &[("Authorization", &operator)],
        );
        assert_eq!(status, 404, "{bad}");
    }

    // Verify now and restore drill now: recorded on the run and beside the
    // restores.
    let id = run["id"].as_i64().expect("id");
    let form = "application/x-www-form-urlencoded";
    for action in ["verify", "drill"] {
        let done = request(
            port,
            "POST",
            &format!("/actions/{action}"),
            &[("Authorization", &operator), ("Content-Type", form)],
            &format!("run={id}"),
        );
        assert_eq!(done.status, 303, "{action}: {done:?}");
    }
    wait_for(
        Duration::from_secs(30),
        "the verification to be recorded",
        || {
            let reply = get(&format!("/api/runs/{id}"), Some(&operator));
            let run: Value = serde_json::from_str(&reply.body).ok()?;
            (run["verify_result"] == "ok").then_some(())
        },
    );
    wait_for(Duration::from_secs(30), "the drill to be recorded", || {
        let list = sandbox.cli(&["restore", "list", "--json"]).success().json();
        list.as_array()?
            .iter()
            .any(|r| r["kind"] == "drill" && r["status"] == "success" && r["source_run_id"] == id)
            .then_some(())
    });

    // `runs list` shows it too.
    let listed = sandbox.cli(&["runs", "list"]).success();
    assert!(
        listed.stdout.contains("manual by token:ci"),
        "{}",
        listed.stdout
    );

    // A form without this browser's CSRF token changes nothing.
    let login_page = get("/login", None);
    let cookies: Vec<String> = login_page
        .cookies()
        .iter()
        .map(|c| c.split(';').next().unwrap_or("").to_string())
        .collect();
    for c in login_page.cookies() {
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
    }
    let jar = cookies.join("; ");
    let csrf = login_page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a csrf field")
        .to_string();
    let forged = request(
        port,
        "POST",
        "/login",
        &[("Cookie", &jar), ("Content-Type", form)],
        &format!("csrf=forged&name=admin&password={ADMIN_PASSWORD}"),
    );
    assert_eq!(forged.status, 403, "{forged:?}");
    let signed_in = request(
        port,
        "POST",
        "/login",
        &[("Cookie", &jar), ("Content-Type", form)],
        &format!("csrf={csrf}&name=viewer&password={VIEWER_PASSWORD}&next=%2F%2Fevil.example"),
    );
    assert_eq!(signed_in.status, 303, "{signed_in:?}");
    // Never sent off-site after sign-in.
    assert_eq!(signed_in.header("location"), Some("/"));
    let session: Vec<String> = signed_in
        .cookies()
        .iter()
        .map(|c| c.split(';').next().unwrap_or("").to_string())
        .collect();
    let jar = session.join("; ");
    let overview = request(port, "GET", "/", &[("Cookie", &jar)], "");
    assert_eq!(overview.status, 200);
    let csrf = overview
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the sign-out form's csrf")
        .to_string();
    // A viewer's session may not act, token or not.
    let acted = request(
        port,
        "POST",
        "/actions/trigger",
        &[("Cookie", &jar), ("Content-Type", form)],
        &format!("csrf={csrf}&type=database"),
    );
    assert_eq!(acted.status, 403, "{acted:?}");
    // A session's API POST needs the CSRF header.
    let api = request(
        port,
        "POST",
        "/api/trigger/database",
        &[("Cookie", &jar)],
        "",
    );
    assert_eq!(api.status, 403, "{api:?}");

    for text in [&overview.body, &listed.stdout, &started.body] {
        for secret in [
            SECRET_KEY,
            ADMIN_PASSWORD,
            VIEWER_PASSWORD,
            TOKEN,
            "$argon2id$",
        ] {
            assert_no_secret(text, secret);
        }
    }
}

#[test]
fn the_trusted_header_is_believed_only_from_trusted_proxies() {
    let sandbox = Sandbox::new();
    let port = free_port();
    // 127.0.0.1 is not a trusted proxy here: its header means nothing.
    sandbox.config(&format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n[dashboard]\nenabled = true\n\
         trusted_proxies = [\"10.9.9.9\"]\n[dashboard.trusted_header]\n\
         user_header = \"X-Forwarded-User\"\ndefault_role = \"operator\"\n"
    ));
    let _worker = start_worker(&sandbox, port, "proxy");
    let reply = request(
        port,
        "GET",
        "/api/runs",
        &[("X-Forwarded-User", "mallory")],
        "",
    );
    assert_eq!(reply.status, 401, "{reply:?}");

    // From a trusted proxy, the header signs the user in.
    let sandbox = Sandbox::new();
    let port = free_port();
    sandbox.config(&format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n[dashboard]\nenabled = true\n\
         trusted_proxies = [\"127.0.0.0/8\"]\n[dashboard.trusted_header]\n\
         user_header = \"X-Forwarded-User\"\nrole_header = \"X-Forwarded-Role\"\n"
    ));
    let _worker = start_worker(&sandbox, port, "proxy-trusted");
    let page = request(port, "GET", "/", &[("X-Forwarded-User", "alice <b>")], "");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.body.contains("alice &lt;b&gt; · viewer"),
        "{}",
        page.body
    );
    let as_operator = request(
        port,
        "GET",
        "/",
        &[
            ("X-Forwarded-User", "bob"),
            ("X-Forwarded-Role", "Operator"),
        ],
        "",
    );
    assert!(as_operator.body.contains("bob · operator"));
}

#[test]
fn the_worker_refuses_a_dashboard_open_to_the_network_without_sign_in() {
    let sandbox = Sandbox::new();
    let port = free_port();
    sandbox.config(&format!(
        "[http]\nlisten = \"0.0.0.0:{port}\"\n[dashboard]\nenabled = true\n"
    ));
    let mut worker = Worker::start(&sandbox, "exposed");
    let status = worker.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let log = worker.log();
    assert!(
        log.contains("beyond loopback, with no sign-in")
            && log.contains("backup-cli dashboard hash-password"),
        "{log}"
    );

    // Users need a key to sign sessions with; a short key is refused.
    sandbox.config(
        "[dashboard]\nenabled = true\n[[dashboard.users]]\nname = \"a\"\n\
         password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\"\nrole = \"viewer\"\n",
    );
    let run = sandbox.cli(&["config", "check"]).failure();
    assert!(
        run.stderr.contains("dashboard.secret_key is needed"),
        "{}",
        run.stderr
    );
    sandbox.config("[dashboard]\nsecret_key = \"short\"\n");
    let run = sandbox.cli(&["config", "check"]).failure();
    assert!(
        run.stderr.contains("at least 32 characters"),
        "{}",
        run.stderr
    );
    assert_no_secret(&run.all(), "short\"");
    sandbox.config(
        "[dashboard]\n[[dashboard.users]]\nname = \"a\"\npassword_hash = \"hunter2\"\nrole = \"viewer\"\n",
    );
    let run = sandbox.cli(&["config", "check"]).failure();
    assert!(
        run.stderr.contains("not an Argon2id hash"),
        "{}",
        run.stderr
    );
    assert_no_secret(&run.all(), "hunter2");
}

#[test]
fn in_queue_mode_the_dashboard_enqueues_and_shows_the_workers() {
    let ns = Namespace::new();
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    let port = free_port();
    let section = dashboard_section(&sandbox, port);
    sandbox.config(&format!(
        "{section}\n{}\n[database_backup]\ndatabases = [\"sqlite://app.sqlite3\"]\n",
        ns.section()
    ));
    let _worker = start_worker(&sandbox, port, "queue");
    ns.wait_for_worker("database");
    let operator = bearer(TOKEN);
    let started = request(
        port,
        "POST",
        "/api/trigger/database",
        &[("Authorization", &operator)],
        "",
    );
    assert_eq!(started.status, 202, "{started:?}");
    let jobs: Value = serde_json::from_str(&started.body).expect("json");
    let task = jobs["jobs"][0]["task_id"]
        .as_str()
        .expect("task id")
        .to_string();
    // A queued job: its run carries the queue's task id.
    let run = wait_for(Duration::from_secs(60), "the queued run to finish", || {
        let reply = request(
            port,
            "GET",
            "/api/runs?status=success",
            &[("Authorization", &operator)],
            "",
        );
        let runs: Vec<Value> = serde_json::from_str(&reply.body).ok()?;
        runs.into_iter().next()
    });
    assert_eq!(run["task_id"], task.as_str());
    assert_eq!(run["triggered_by"], "token:ci");
    let targets = request(
        port,
        "GET",
        "/api/targets",
        &[("Authorization", &operator)],
        "",
    );
    let overview: Value = serde_json::from_str(&targets.body).expect("json");
    assert_eq!(overview["mode"], "queue");
    assert_eq!(
        overview["replicas"].as_array().map(Vec::len),
        Some(1),
        "{overview:#}"
    );
    assert!(overview["queue_depth"].is_array(), "{overview:#}");
    assert_eq!(overview["targets"][0]["last_success"]["id"], run["id"]);
}

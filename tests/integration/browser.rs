//! The dashboard in a real browser (headless Chromium over WebDriver),
//! against a real worker in single-process mode, on seeded history: sign-in
//! and sign-out, a wrong password refused and then rate-limited, a viewer
//! refused an action, a forged form refused, filters, search and pages, a
//! backup triggered elsewhere appearing and finishing on an open page
//! without a reload, cleanup preview then confirm, a pause the worker
//! honours, a failed run's detail, escaping, and no planted secret on any
//! page. Screenshots of every page (desktop and phone width) land in
//! `target/dashboard-screenshots/`.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use fantoccini::{Client, Locator};
use serde_json::Value;

use crate::{
    support::{Sandbox, assert_no_secret, closed_port, sh},
    web_support::{
        ADMIN_PASSWORD, Browser, SECRET_KEY, TOKEN, VIEWER_PASSWORD, dashboard_section, free_port,
        request, start_worker,
    },
    worker_support::Worker,
};

const SMTP_PASSWORD: &str = "planted-smtp-pw-77";
const XSS: &str = "<script>window.__xss=1</script> dump failed: disk full";

/// 150 runs of `app` over the last 150 hours (every sixth failed, one with
/// markup in its error), and 20 runs 40 to 60 days old.
fn seed(sandbox: &Sandbox) {
    sandbox.cli(&["migrate"]).success();
    let now = Utc::now();
    let mut sql = String::from("BEGIN;\n");
    let stamp = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string();
    let mut row = |age: TimeDelta, failed: bool, error: &str| {
        let started = now - age;
        let (status, artifact) = if failed {
            ("failed", "NULL")
        } else {
            ("success", "NULL")
        };
        sql.push_str(&format!(
            "INSERT INTO backup_runs (backup_type, target, status, \"trigger\", attempt, worker, \
             started_at, completed_at, duration_seconds, error_message, artifact, size_bytes) \
             VALUES ('database', 'app', '{status}', 'schedule', 1, 'seed:1', '{}', '{}', 2.5, '{}', {artifact}, 4096);\n",
            stamp(started),
            stamp(started + TimeDelta::seconds(2)),
            error.replace('\'', "''"),
        ));
    };
    for i in 1..=150 {
        let failed = i % 6 == 0;
        let error = match (failed, i) {
            (true, 42) => XSS.to_string(),
            (true, _) => format!("pg_dump: connection refused (seed {i})"),
            _ => String::new(),
        };
        row(TimeDelta::hours(i), failed, &error);
    }
    for d in 0..20 {
        row(TimeDelta::days(40 + d), false, "");
    }
    sql.push_str("COMMIT;\n");
    let db = sandbox.path().join("history.db");
    std::fs::write(sandbox.path().join("seed.sql"), sql).expect("seed sql");
    sh(&format!(
        "sqlite3 '{}' < '{}'",
        db.display(),
        sandbox.path().join("seed.sql").display()
    ));
}

async fn wait_css(c: &Client, css: &str, secs: u64) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(secs))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("waiting for {css}: {e}"))
}

async fn body_text(c: &Client) -> String {
    c.find(Locator::Css("body"))
        .await
        .expect("body")
        .text()
        .await
        .expect("text")
}

/// The runs on the page: (id, status), in page order.
async fn rows(c: &Client) -> Vec<(i64, String)> {
    let v = c
        .execute(
            "return Array.from(document.querySelectorAll('tr[data-run]'))\
             .map(r => [Number(r.dataset.run), r.dataset.status]);",
            vec![],
        )
        .await
        .expect("rows");
    serde_json::from_value::<Vec<(i64, String)>>(v).expect("rows json")
}

async fn sign_in(c: &Client, base: &str, name: &str, password: &str) {
    c.goto(&format!("{base}/login")).await.expect("login page");
    c.find(Locator::Css("input[name=name]"))
        .await
        .expect("name")
        .send_keys(name)
        .await
        .expect("type");
    c.find(Locator::Css("input[name=password]"))
        .await
        .expect("password")
        .send_keys(password)
        .await
        .expect("type");
    c.find(Locator::Css("section.login button"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("click");
}

async fn sign_out(c: &Client) {
    let Ok(button) = c.find(Locator::Css(".who button")).await else {
        panic!(
            "no sign-out button on {}:\n{}",
            c.current_url().await.expect("url"),
            c.source().await.expect("source")
        );
    };
    button.click().await.expect("click");
    wait_css(c, "section.login", 10).await;
}

fn scheduled_media_runs_since(sandbox: &Sandbox, since: chrono::DateTime<Utc>) -> usize {
    sandbox
        .runs()
        .iter()
        .filter(|r| {
            r["backup_type"] == "media"
                && r["trigger"] == "schedule"
                && r["started_at"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t > since)
        })
        .count()
}

#[test]
fn the_dashboard_in_a_real_browser() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(dashboard_in_a_browser());
}

async fn dashboard_in_a_browser() {
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    std::fs::create_dir_all(sandbox.path().join("media")).expect("media dir");
    std::fs::write(sandbox.path().join("media/a.txt"), "hello").expect("media file");
    let port = free_port();
    let section = dashboard_section(&sandbox, port);
    sandbox.config(&format!(
        "timezone = \"Europe/Rome\"\nhistory_retention_days = 30\nnotification_emails = [\"ops@example.com\"]\n\
         {section}\n\
         [smtp]\nurl = \"smtp://mailer:{SMTP_PASSWORD}@127.0.0.1:{}\"\nfrom = \"Backups <backups@example.com>\"\n\
         [database_backup]\nschedule = \"0 3 * * *\"\ndatabases = [\"sqlite://app.sqlite3\"]\n\
         [media_backup]\nenabled = true\nschedule = \"*/2 * * * * *\"\npaths = [\"media\"]\n",
        closed_port()
    ));
    seed(&sandbox);
    sandbox.cli(&["schedules", "setup"]).success();
    let worker = start_worker(&sandbox, port, "browser");
    let base = format!("http://127.0.0.1:{port}");
    let browser = Browser::start().await;
    let c = &browser.client;
    let mut pages: Vec<String> = Vec::new();

    // Signed out, every page leads to the sign-in form.
    c.goto(&format!("{base}/runs")).await.expect("goto");
    wait_css(c, "section.login", 10).await;
    browser.shoot("login").await;
    pages.push(c.source().await.expect("source"));

    // A wrong password is refused, and says nothing more.
    sign_in(c, &base, "admin", "not-the-password").await;
    wait_css(c, "p.problem", 10).await;
    assert!(body_text(c).await.contains("Wrong name or password."));

    // Sign in; the overview shows the target tile with its strip.
    sign_in(c, &base, "admin", ADMIN_PASSWORD).await;
    wait_css(c, "article.tile[data-target=app]", 10).await;
    let tile = body_text(c).await;
    assert!(tile.contains("admin · operator"), "{tile}");
    assert!(c.find(Locator::Css("svg.strip rect.failed")).await.is_ok());
    browser.shoot("overview").await;
    pages.push(c.source().await.expect("source"));

    // Pause the every-2-seconds media schedule; the worker honours it.
    c.goto(&format!("{base}/schedules")).await.expect("goto");
    c.find(Locator::Css("article[data-schedule=media] button"))
        .await
        .expect("pause button")
        .click()
        .await
        .expect("pause");
    wait_css(c, "article[data-schedule=media] .badge.failed", 10).await;
    assert!(body_text(c).await.contains("paused by web:admin"));
    let paused = Instant::now();
    crate::worker_support::wait_for(
        Duration::from_secs(20),
        "the worker to load the pause",
        || {
            worker
                .log()
                .contains("this schedule is paused")
                .then_some(())
        },
    );
    let honoured_at = Utc::now() + TimeDelta::seconds(1);
    // Absence can only be watched for a while: three fire intervals.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        scheduled_media_runs_since(&sandbox, honoured_at),
        0,
        "a paused schedule fired (pause seen {:?} after the click)",
        paused.elapsed()
    );
    // `schedules setup` keeps the pause; `schedules list` shows it.
    sandbox.cli(&["schedules", "setup"]).success();
    let listed = sandbox
        .cli(&["schedules", "list", "--json"])
        .success()
        .json();
    let media = listed
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "media"))
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        media["off"]
            .as_str()
            .is_some_and(|o| o.contains("paused by web:admin")),
        "{listed:#}"
    );
    browser.shoot("schedules").await;
    pages.push(c.source().await.expect("source"));

    // A forged form (wrong CSRF token) changes nothing.
    c.goto(&format!("{base}/schedules")).await.expect("goto");
    c.execute(
        "document.querySelectorAll('input[name=csrf]').forEach(i => i.value = 'forged');",
        vec![],
    )
    .await
    .expect("forge");
    c.find(Locator::Css("article[data-schedule=media] button"))
        .await
        .expect("resume button")
        .click()
        .await
        .expect("click");
    wait_css(c, "section.error", 10).await;
    assert!(body_text(c).await.contains("Not allowed"));
    let still = sandbox
        .cli(&["schedules", "list", "--json"])
        .success()
        .json();
    assert!(still.to_string().contains("paused by web:admin"));

    // Runs: counts per status, filters, search, pages.
    c.goto(&format!("{base}/runs?type=database&target=app"))
        .await
        .expect("goto");
    wait_css(c, "tr[data-run]", 10).await;
    let first = rows(c).await;
    assert_eq!(first.len(), 50, "a page is 50 runs");
    let chips = c
        .find(Locator::Css("nav.chips"))
        .await
        .expect("chips")
        .text()
        .await
        .expect("text");
    assert!(chips.contains("failed 25"), "{chips}");
    assert!(chips.contains("all 170"), "{chips}");
    browser.shoot("runs").await;
    pages.push(c.source().await.expect("source"));
    c.find(Locator::Css("a[rel=next]"))
        .await
        .expect("older link")
        .click()
        .await
        .expect("older");
    wait_css(c, "a[href*='/runs?'][href$='target=app']", 10).await;
    let second = rows(c).await;
    assert_eq!(second.len(), 50);
    // Seeded newest first (run i started i hours ago): page 1 is runs
    // 1-50, page 2 the next 50, in that order.
    let ids = |page: &[(i64, String)]| page.iter().map(|(id, _)| *id).collect::<Vec<_>>();
    assert_eq!(ids(&first), (1..=50).collect::<Vec<_>>());
    assert_eq!(ids(&second), (51..=100).collect::<Vec<_>>());
    c.find(Locator::Css("nav.chips a[href*='status=failed']"))
        .await
        .expect("failed chip")
        .click()
        .await
        .expect("click");
    wait_css(c, "nav.chips a.on[href*='status=failed']", 10).await;
    let failed = rows(c).await;
    assert!(
        !failed.is_empty() && failed.iter().all(|(_, s)| s == "failed"),
        "{failed:?}"
    );
    let until = (Utc::now() - TimeDelta::days(35)).format("%Y-%m-%d");
    c.goto(&format!("{base}/runs?until={until}"))
        .await
        .expect("goto");
    wait_css(c, "tr[data-run]", 10).await;
    assert_eq!(rows(c).await.len(), 20, "the 20 old runs, by date range");
    c.goto(&format!("{base}/runs")).await.expect("goto");
    let q = c.find(Locator::Css("input[name=q]")).await.expect("search");
    q.send_keys("no such error text").await.expect("type");
    c.find(Locator::Css("form.filters button"))
        .await
        .expect("filter")
        .click()
        .await
        .expect("click");
    wait_css(c, "#runs p.muted", 10).await;
    assert!(body_text(c).await.contains("No runs match."));

    // The failed run with markup in its error: found by search, shown as text.
    c.goto(&format!("{base}/runs?q=disk+full"))
        .await
        .expect("goto");
    wait_css(c, "tr[data-run]", 10).await;
    let found = rows(c).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        body_text(c)
            .await
            .contains("<script>window.__xss=1</script>")
    );
    c.find(Locator::Css("tr[data-run] td a"))
        .await
        .expect("run link")
        .click()
        .await
        .expect("click");
    let error = wait_css(c, "pre.error", 10)
        .await
        .text()
        .await
        .expect("error");
    assert_eq!(error, XSS);
    let xss = c
        .execute("return window.__xss === undefined;", vec![])
        .await
        .expect("js");
    assert_eq!(xss, Value::Bool(true), "markup from history ran as script");
    browser.shoot("run-failed").await;
    pages.push(c.source().await.expect("source"));

    // A backup triggered elsewhere appears on the open page and finishes,
    // without a reload.
    c.goto(&format!("{base}/runs?type=database&target=app"))
        .await
        .expect("goto");
    wait_css(c, "tr[data-run]", 10).await;
    c.execute("window.__stay = 1;", vec![])
        .await
        .expect("marker");
    let top = rows(c).await.iter().map(|(id, _)| *id).max().unwrap_or(0);
    let started = request(
        port,
        "POST",
        "/api/trigger/database?target=app",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        "",
    );
    assert_eq!(started.status, 202, "{started:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = rows(c).await;
        if now.iter().any(|(id, s)| *id > top && s == "success") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new run never showed as success: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stayed = c
        .execute("return window.__stay;", vec![])
        .await
        .expect("js");
    assert_eq!(stayed, serde_json::json!(1), "the page was reloaded");
    assert!(body_text(c).await.contains("token:ci"));

    // "Back up now" on the tile: the run records who clicked.
    c.goto(&base).await.expect("goto");
    c.find(Locator::Css("article.tile[data-target=app] button"))
        .await
        .expect("back up now")
        .click()
        .await
        .expect("click");
    wait_css(c, "tr[data-run]", 10).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !body_text(c).await.contains("web:admin") {
        assert!(Instant::now() < deadline, "no run by web:admin");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Artifacts: what storage holds, with its verification state.
    c.goto(&format!("{base}/artifacts")).await.expect("goto");
    wait_css(c, "td.mono a", 10).await;
    browser.shoot("artifacts").await;
    pages.push(c.source().await.expect("source"));

    // Cleanup: the preview counts, the confirmation deletes.
    c.goto(&format!("{base}/cleanup")).await.expect("goto");
    let preview = wait_css(c, "#cleanup-preview", 10)
        .await
        .text()
        .await
        .expect("text");
    assert!(preview.starts_with("20 run record(s)"), "{preview}");
    browser.shoot("cleanup").await;
    pages.push(c.source().await.expect("source"));
    c.find(Locator::Css("button.danger"))
        .await
        .expect("confirm")
        .click()
        .await
        .expect("click");
    let done = wait_css(c, "#cleanup-done", 10)
        .await
        .text()
        .await
        .expect("text");
    assert!(
        done.starts_with("Deleted 20 run record(s) older than 30 days"),
        "{done}"
    );
    let left = request(
        port,
        "GET",
        &format!("/api/runs?until={until}"),
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        "",
    );
    assert_eq!(left.body.trim(), "[]");

    // Sign out; the session ends everywhere: a copy of its cookie is
    // refused afterwards.
    let copied = c
        .get_named_cookie("backup_session")
        .await
        .expect("the session cookie")
        .value()
        .to_string();
    let before = request(
        port,
        "GET",
        "/api/targets",
        &[("Cookie", &format!("backup_session={copied}"))],
        "",
    );
    assert_eq!(before.status, 200);
    sign_out(c).await;
    let after = request(
        port,
        "GET",
        "/api/targets",
        &[("Cookie", &format!("backup_session={copied}"))],
        "",
    );
    assert_eq!(after.status, 401, "a signed-out session still works");

    // A viewer sees no actions and is refused one.
    sign_in(c, &base, "viewer", VIEWER_PASSWORD).await;
    wait_css(c, "article.tile[data-target=app]", 10).await;
    assert!(c.find(Locator::Css("article.tile button")).await.is_err());
    c.execute(
        "const f = document.createElement('form'); f.method = 'post'; f.action = '/actions/trigger';\
         for (const [k, v] of [['csrf', document.querySelector('input[name=csrf]').value], ['type', 'database']]) {\
           const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i); }\
         document.body.appendChild(f); f.submit();",
        vec![],
    )
    .await
    .expect("post as viewer");
    wait_css(c, "section.error", 10).await;
    assert!(body_text(c).await.contains("may look, not act"));
    pages.push(c.source().await.expect("source"));
    c.goto(&base).await.expect("goto");
    sign_out(c).await;

    // Wrong passwords lock out (five per address and per name within 15
    // minutes; this address already failed once, at the start), and then
    // even the right password is refused.
    let mut tries = 0;
    loop {
        sign_in(c, &base, "admin", "guess").await;
        tries += 1;
        let page = wait_css(c, "p.problem, section.error", 10).await;
        if page.attr("class").await.expect("class").as_deref() != Some("problem") {
            break;
        }
        assert!(
            tries < 5,
            "still no lockout after {tries} more wrong passwords"
        );
    }
    assert_eq!(
        tries, 5,
        "the address's earlier failure counts: locked on the 5th"
    );
    sign_in(c, &base, "admin", ADMIN_PASSWORD).await;
    wait_css(c, "section.error", 10).await;
    assert!(body_text(c).await.contains("Too many failed sign-ins"));
    pages.push(c.source().await.expect("source"));

    // No planted secret on any page, nor in the worker's log.
    let log = worker.log();
    for page in pages.iter().chain([&log]) {
        for secret in [
            SECRET_KEY,
            ADMIN_PASSWORD,
            VIEWER_PASSWORD,
            TOKEN,
            SMTP_PASSWORD,
            "$argon2id$",
        ] {
            assert_no_secret(page, secret);
        }
    }
    c.clone().close().await.expect("close the browser");
    drop::<Worker>(worker);
}

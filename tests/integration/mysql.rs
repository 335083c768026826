//! MariaDB backups against the real server, restored with `mariadb`.

use std::fs;

use crate::support::*;

pub fn seed(db: &MyDb) {
    db.sql(
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(100), note TEXT, data BLOB) CHARACTER SET utf8mb4;
         INSERT INTO items VALUES (1, 'Zoë Müller', 'naïve café 🚀', 0x00FF10807F),
                                  (2, '李雷', 'line\\nbreak', REPEAT(0x00FF, 300)),
                                  (3, 'O''Brien', NULL, NULL);
         CREATE TRIGGER items_upper BEFORE INSERT ON items FOR EACH ROW SET NEW.name = UPPER(NEW.name);
         CREATE PROCEDURE item_count() SELECT COUNT(*) FROM items;",
    );
}

pub fn digest(db: &MyDb) -> String {
    db.sql("SELECT MD5(GROUP_CONCAT(CONCAT_WS('#', id, name, IFNULL(note, 'NULL'), IFNULL(HEX(data), 'NULL')) ORDER BY id SEPARATOR '|')) FROM items")
}

#[test]
fn backup_restores_data_routines_and_triggers_and_keeps_the_password_out_of_argv() {
    let source = MyDb::create();
    seed(&source);
    let user = unique("u");
    let secret = "p@ss:w\"rd-Ü1";
    mysql_exec(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY 'p@ss:w\"rd-Ü1'; GRANT ALL ON {0}.* TO '{user}'@'%'; GRANT SELECT ON mysql.proc TO '{user}'@'%';",
        source.name
    ));
    let sandbox = Sandbox::new();
    let record = sandbox.path().join("argv.txt");
    let wrapper = sandbox.path().join("mariadb-dump");
    script(
        &wrapper,
        &format!(
            "[ \"$1\" = --version ] || echo \"$*\" > '{}'\nexec /usr/bin/mariadb-dump \"$@\"",
            record.display()
        ),
    );
    // Percent-encoded in the URL, as URLs require.
    let encoded = "p%40ss%3Aw%22rd-%C3%9C1";
    sandbox.config(&format!(
        "[tools]\nmariadb_dump = \"{}\"\n[database_backup]\ndatabases = [\"mariadb://{user}:{encoded}@127.0.0.1:3306/{}\"]",
        wrapper.display(),
        source.name
    ));
    let out = sandbox.cli(&["backup", "database", "--json"]).success();
    let runs = out.json();
    let run = only(runs.as_array().expect("array"));
    let key = run["artifact"].as_str().expect("key");
    assert!(key.ends_with(".sql.zst"), "{key}");

    let argv = fs::read_to_string(&record).expect("wrapper ran");
    assert_no_secret(&argv, secret);
    assert_no_secret(&argv, encoded);
    assert!(
        argv.contains("--defaults-extra-file=") && argv.contains("--single-transaction"),
        "{argv}"
    );
    assert!(
        argv.contains("--routines") && argv.contains("--triggers") && argv.contains("--events"),
        "{argv}"
    );
    let defaults = argv
        .split_whitespace()
        .find_map(|a| a.strip_prefix("--defaults-extra-file="))
        .expect("file");
    assert!(
        !std::path::Path::new(defaults).exists(),
        "the credentials file is removed after the dump"
    );
    assert_no_secret(&out.all(), secret);
    assert_no_secret(&sandbox.cli(&["runs", "list", "--json"]).stdout, secret);

    let restored = MyDb::create();
    let artifact = sandbox.storage().join(key);
    sh(&format!(
        "zstd -dc '{}' | mariadb -uroot -h 127.0.0.1 --default-character-set=utf8mb4 {}",
        artifact.display(),
        restored.name
    ));
    assert_eq!(digest(&restored), digest(&source));
    assert_eq!(restored.sql("SHOW TRIGGERS").lines().count(), 1);
    assert_eq!(
        restored
            .sql("SHOW PROCEDURE STATUS WHERE Db = DATABASE()")
            .lines()
            .count(),
        1
    );
}

#[test]
fn wrong_password_and_missing_tool_fail_without_leaking() {
    let source = MyDb::create();
    seed(&source);
    let user = unique("u");
    mysql_exec(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY 'right-pw'; GRANT ALL ON {}.* TO '{user}'@'%';",
        source.name
    ));

    let sandbox = Sandbox::new();
    let wrong = "Wr0ng-Pa55word";
    sandbox.config(&format!(
        "[database_backup]\ndatabases = [\"mysql://{user}:{wrong}@127.0.0.1:3306/{}\"]",
        source.name
    ));
    let out = sandbox.cli(&["backup", "database"]).failure();
    let runs = sandbox.runs();
    let run = only(&runs);
    let msg = run["error_message"].as_str().expect("msg");
    assert!(msg.contains("Access denied"), "{msg}");
    assert!(out.stderr.contains("Access denied"), "{}", out.stderr);
    assert_no_secret(&out.all(), wrong);
    assert_no_secret(&run.to_string(), wrong);
    assert_eq!(sandbox.stored_files(), Vec::<String>::new());

    let sandbox = Sandbox::new();
    sandbox.config(&format!(
        "[database_backup]\ndatabases = [\"mysql://root@127.0.0.1:3306/{}\"]",
        source.name
    ));
    let empty = tempfile::tempdir().expect("dir");
    let out = Run::from(
        sandbox
            .command(&["backup", "database"])
            .env("PATH", empty.path())
            .output()
            .expect("run"),
    )
    .failure();
    assert!(
        out.stderr
            .contains("mariadb-dump (or mysqldump) not found on PATH"),
        "{}",
        out.stderr
    );
    assert_eq!(only(&sandbox.runs())["status"], "failed");
}

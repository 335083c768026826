//! Integration tests: the real `backup-cli` and `backup-worker` binaries
//! against real PostgreSQL, MariaDB, SQLite, Redis, an S3-protocol server and
//! standard restore tools.

mod bench;
mod browser;
mod config;
mod dashboard;
mod encryption;
mod history;
mod hostile;
mod layout;
mod logs;
mod media;
mod mysql;
mod notify;
mod packaging;
mod postgres;
mod remote_storage;
mod restore;
mod retention;
mod schedules;
mod servers;
mod sinks;
mod sqlite;
mod storage;
mod support;
mod web_support;
mod worker;
mod worker_support;

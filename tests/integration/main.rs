//! Integration tests: the real `backup-cli` and `backup-worker` binaries
//! against real PostgreSQL, MariaDB, SQLite, Redis, an S3-protocol server and
//! standard restore tools.

mod bench;
mod config;
mod history;
mod hostile;
mod layout;
mod logs;
mod media;
mod mysql;
mod notify;
mod postgres;
mod restore;
mod schedules;
mod sinks;
mod sqlite;
mod storage;
mod support;
mod worker;
mod worker_support;

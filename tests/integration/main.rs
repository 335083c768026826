//! Integration tests: the real `backup-cli` binary against real PostgreSQL,
//! MariaDB, SQLite, an S3-protocol server and standard restore tools.

mod config;
mod history;
mod media;
mod mysql;
mod postgres;
mod sqlite;
mod storage;
mod support;

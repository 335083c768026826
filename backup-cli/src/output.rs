//! Shared formatting: sizes, times, tables, coloured status badges.

use std::io::{IsTerminal, Write};

use backup_core::{config::Timezone, model::RunStatus};
use chrono::{DateTime, Utc};
use comfy_table::{Cell, Color, Table, presets::UTF8_BORDERS_ONLY};

/// `println!` for results: a closed pipe (`backup-cli runs list | head`)
/// ends the process quietly instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Writes one line to stdout; exits 0 when the reader has gone away.
pub fn write_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Colour on stdout only for a terminal, and never with `NO_COLOR` set.
pub fn color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A table styled for the terminal, or plain ASCII for pipes and files.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    if color() {
        table.load_preset(UTF8_BORDERS_ONLY).enforce_styling();
    } else {
        table
            .load_preset(comfy_table::presets::NOTHING)
            .force_no_tty();
    }
    table.set_header(header.iter().map(Cell::new));
    table
}

/// A status cell: green success, red failed, yellow running.
pub fn status_cell(status: RunStatus) -> Cell {
    let cell = Cell::new(status.as_str());
    if !color() {
        return cell;
    }
    match status {
        RunStatus::Success => cell.fg(Color::Green),
        RunStatus::Failed => cell.fg(Color::Red),
        RunStatus::Running => cell.fg(Color::Yellow),
    }
}

/// `2026-11-26 02:00:00 CET` in the configured timezone.
pub fn time(t: DateTime<Utc>, tz: Timezone) -> String {
    t.with_timezone(&tz.0)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

pub use backup_core::model::human_bytes as bytes;

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A spinner showing `progress` (bytes, rate, elapsed) on stderr; abort the
/// returned task and clear the bar when done.
pub fn spinner(
    label: &str,
    progress: backup_core::pipeline::Progress,
) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    use indicatif::{ProgressBar, ProgressStyle};
    let bar = ProgressBar::new_spinner().with_prefix(label.to_string());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix}: {bytes} read ({bytes_per_sec}) {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let ticking = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            ticking.set_position(progress.bytes());
            ticking.tick();
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    (bar, ticker)
}

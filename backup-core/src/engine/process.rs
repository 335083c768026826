//! Running a dump tool: stream its stdout, then let its exit status decide.

use std::{
    collections::VecDeque,
    io::{self, BufRead, BufReader, Read, Write},
    os::unix::process::ExitStatusExt,
    process::{Child, Command, ExitStatus, Stdio},
    thread,
};

use super::source::EngineError;
use crate::redact;

/// stderr lines kept for the error message.
const STDERR_TAIL: usize = 20;
/// Longest error text taken from stderr.
const STDERR_MAX: usize = 600;

/// Kills the child if the stream is abandoned before it was waited for.
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `cmd`, copying its stdout into `out`, and fails unless it exits 0.
///
/// stderr is drained on its own thread (a full stderr pipe would otherwise
/// stall the tool); its last lines, redacted of `secrets`, explain a failure.
/// Lines on stderr of a successful run are returned as warnings.
///
/// # Errors
///
/// [`EngineError::ToolMissing`] if it cannot start, [`EngineError::Output`]
/// if `out` fails (the tool is then killed), [`EngineError::ToolFailed`] on
/// a non-zero exit or a signal.
pub fn stream(
    mut cmd: Command,
    tool: &str,
    hint: &str,
    secrets: &[&str],
    out: &mut dyn Write,
) -> Result<Vec<String>, EngineError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = spawn(&mut cmd, tool, hint)?;
    let mut reaper = Reaper(Some(child));
    let child = reaper.0.as_mut().expect("child just stored");
    let tail = drain_stderr(child.stderr.take().expect("stderr is piped"));
    let mut stdout = child.stdout.take().expect("stdout is piped");

    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(EngineError::Io {
                    context: format!("reading {tool} output"),
                    source: e,
                });
            }
        };
        out.write_all(&buf[..n]).map_err(EngineError::Output)?;
    }
    drop(stdout);
    let mut child = reaper.0.take().expect("child still held");
    let status = child.wait().map_err(|e| EngineError::Io {
        context: format!("waiting for {tool}"),
        source: e,
    })?;
    let lines = finish_stderr(tail, secrets);
    if status.success() {
        Ok(lines)
    } else {
        Err(EngineError::ToolFailed {
            tool: tool.to_string(),
            status: describe(status),
            stderr: summarize(&lines),
        })
    }
}

/// Runs `cmd` with `input` on its stdin (a restore tool), copying its stdout
/// into `out` (or discarding it), and fails unless it exits 0.
///
/// When reading `input` fails (a corrupt or unverified artifact), the tool
/// is killed before it sees the end of its input, so a tool that applies its
/// work at the end (`pg_restore --single-transaction`) changes nothing.
///
/// A tool that needs only the start of its input (`pg_restore --list`) may
/// close it early when `reads_all` is false: the rest of `input` is then
/// drained, so its own checks (decompression, checksums) still run.
///
/// # Errors
///
/// As [`stream`]; a failure of `input` is [`EngineError::Io`] with the
/// reader's error.
pub fn feed(
    mut cmd: Command,
    tool: &str,
    hint: &str,
    secrets: &[&str],
    input: &mut dyn Read,
    out: Option<&mut (dyn Write + Send)>,
    reads_all: bool,
) -> Result<Vec<String>, EngineError> {
    cmd.stdin(Stdio::piped())
        .stdout(if out.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped());
    let child = spawn(&mut cmd, tool, hint)?;
    let mut reaper = Reaper(Some(child));
    let child = reaper.0.as_mut().expect("child just stored");
    let tail = drain_stderr(child.stderr.take().expect("stderr is piped"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take();
    let copied = thread::scope(|scope| {
        let reader = stdout
            .zip(out)
            .map(|(mut stdout, out)| scope.spawn(move || io::copy(&mut stdout, out).map(|_| ())));
        let fed = copy_into(input, &mut stdin);
        if matches!(fed, Err(Feed::Input(_))) {
            // Killed while its stdin is still open: it never sees an end of
            // input, so it cannot finish (and commit) on a partial stream.
            let _ = child.kill();
        }
        drop(stdin);
        let read = reader.map_or(Ok(()), |r| r.join().unwrap_or(Ok(())));
        (fed, read)
    });
    let (fed, read) = copied;
    if let Err(Feed::Input(e)) = fed {
        // Killed above; the reaper reaps it.
        drop(reaper);
        return Err(EngineError::Io {
            context: "reading the artifact".into(),
            source: e,
        });
    }
    let mut child = reaper.0.take().expect("child still held");
    let status = child.wait().map_err(|e| EngineError::Io {
        context: format!("waiting for {tool}"),
        source: e,
    })?;
    let lines = finish_stderr(tail, secrets);
    if !status.success() {
        return Err(EngineError::ToolFailed {
            tool: tool.to_string(),
            status: describe(status),
            stderr: summarize(&lines),
        });
    }
    // The tool succeeded but did not take all its input: fine for a tool
    // that reads only what it needs, once the rest proves readable; else the
    // work is not known to be whole.
    match fed {
        Err(Feed::Tool(e)) if !reads_all && e.kind() == io::ErrorKind::BrokenPipe => {
            io::copy(input, &mut io::sink()).map_err(|e| EngineError::Io {
                context: "reading the artifact".into(),
                source: e,
            })?;
        }
        Err(Feed::Tool(e)) => {
            return Err(EngineError::Io {
                context: format!("writing to {tool}"),
                source: e,
            });
        }
        _ => {}
    }
    read.map_err(EngineError::Output)?;
    Ok(lines)
}

/// Which side of a copy failed.
enum Feed {
    Input(io::Error),
    Tool(io::Error),
}

fn copy_into(input: &mut dyn Read, to: &mut dyn Write) -> Result<(), Feed> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Feed::Input(e)),
        };
        to.write_all(&buf[..n]).map_err(Feed::Tool)?;
    }
}

fn spawn(cmd: &mut Command, tool: &str, hint: &str) -> Result<Child, EngineError> {
    cmd.spawn().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => EngineError::ToolMissing {
            tool: tool.to_string(),
            where_: String::new(),
            hint: hint.to_string(),
        },
        _ => EngineError::Io {
            context: format!("starting {tool}"),
            source: e,
        },
    })
}

/// Keeps the last [`STDERR_TAIL`] lines of a child's stderr, on a thread.
fn drain_stderr(stderr: std::process::ChildStderr) -> thread::JoinHandle<VecDeque<String>> {
    thread::spawn(move || {
        let mut lines = VecDeque::with_capacity(STDERR_TAIL);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.len() == STDERR_TAIL {
                lines.pop_front();
            }
            lines.push_back(line);
        }
        lines
    })
}

/// The kept stderr lines, redacted, without blank ones.
fn finish_stderr(tail: thread::JoinHandle<VecDeque<String>>, secrets: &[&str]) -> Vec<String> {
    tail.join()
        .unwrap_or_default()
        .into_iter()
        .map(|l| redact::text(&l, secrets))
        .filter(|l| !l.trim().is_empty())
        .collect()
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => {
            let name = match sig {
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGTERM => " (SIGTERM)",
                libc::SIGSEGV => " (SIGSEGV)",
                libc::SIGPIPE => " (SIGPIPE)",
                libc::SIGINT => " (SIGINT)",
                _ => "",
            };
            format!("was killed by signal {sig}{name} before finishing")
        }
        (None, None) => "ended abnormally".into(),
    }
}

/// The lines that say what went wrong, on one line.
fn summarize(lines: &[String]) -> String {
    let errors: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.to_ascii_lowercase().contains("error") || l.contains("FATAL"))
        .collect();
    let picked = if errors.is_empty() {
        lines.last().map(|l| vec![l.trim()]).unwrap_or_default()
    } else {
        errors
    };
    let mut text = picked.join(" | ");
    if text.len() > STDERR_MAX {
        let mut cut = STDERR_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_stdout_and_reports_a_failed_exit_with_redacted_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "printf 'partial'; echo 'tool: error: auth failed for hunter2' >&2; exit 3",
        ]);
        let mut out = Vec::new();
        let err = stream(cmd, "tool", "", &["hunter2"], &mut out)
            .unwrap_err()
            .to_string();
        assert_eq!(out, b"partial");
        assert_eq!(
            err,
            "tool exited with status 3: tool: error: auth failed for ***"
        );
    }

    #[test]
    fn feed_passes_input_and_a_failing_input_kills_the_tool() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "wc -c"]);
        let mut out = Vec::new();
        feed(cmd, "wc", "", &[], &mut &b"12345"[..], Some(&mut out), true).unwrap();
        assert_eq!(String::from_utf8_lossy(&out).trim(), "5");

        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "sha256 mismatch",
                ))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("finished");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("cat >/dev/null; touch {}", marker.display()));
        let err = feed(cmd, "sh", "", &[], &mut Broken, None, true).unwrap_err();
        assert!(err.to_string().contains("sha256 mismatch"), "{err}");
        assert!(!marker.exists(), "the tool was not left to finish");
    }

    #[test]
    fn a_signal_is_a_failure_even_after_output() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "printf data; kill -9 $$"]);
        let err = stream(cmd, "dump", "", &[], &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("killed by signal 9 (SIGKILL)"), "{err}");
    }

    #[test]
    fn a_missing_tool_says_how_to_fix_it() {
        let cmd = Command::new("/nonexistent/pg_dump");
        let err = stream(
            cmd,
            "pg_dump",
            "install postgresql-client",
            &[],
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.is_permanent());
        assert!(
            err.to_string().contains("install postgresql-client"),
            "{err}"
        );
    }
}

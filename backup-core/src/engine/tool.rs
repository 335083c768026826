//! The external dump and restore tools: finding them and reading their
//! versions.

use std::{io, path::PathBuf};

use super::source::EngineError;

/// Runs `tool --version` and returns its first line.
///
/// # Errors
///
/// [`EngineError::ToolMissing`] when the tool cannot be run.
pub(crate) async fn tool_version(tool: &PathBuf, hint: &str) -> Result<String, EngineError> {
    let missing = || EngineError::ToolMissing {
        tool: tool.display().to_string(),
        where_: if tool.components().count() > 1 {
            String::new()
        } else {
            " on PATH".into()
        },
        hint: hint.to_string(),
    };
    let out = tokio::process::Command::new(tool)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => missing(),
            _ => EngineError::Io {
                context: format!("running {} --version", tool.display()),
                source: e,
            },
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().next() {
        Some(line) if out.status.success() => Ok(line.trim().to_string()),
        _ => Err(missing()),
    }
}

/// The first `major.minor` version number in a tool's `--version` line.
pub(crate) fn version_number(line: &str) -> Option<(u32, u32)> {
    line.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find_map(|token| {
            let mut parts = token.split('.').filter(|p| !p.is_empty());
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
            Some((major, minor))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_versions_from_tool_banners() {
        assert_eq!(
            version_number("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"),
            Some((15, 20))
        );
        assert_eq!(
            version_number("pg_dump (PostgreSQL) 17beta1"),
            Some((17, 0))
        );
        assert_eq!(version_number("no digits"), None);
    }
}

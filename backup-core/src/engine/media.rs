//! Media: a tar stream of a directory tree, with relative paths,
//! permissions, mtimes and symlinks as links.

use std::{
    fs,
    io::Write,
    path::{Component, Path},
};

use globset::{Glob, GlobSet, GlobSetBuilder};
use tar::{Builder, HeaderMode};
use walkdir::WalkDir;

use super::source::{EngineError, Source, SourceStats};
use crate::config::MediaTarget;

/// Checks the directory and returns its archive as a source.
///
/// # Errors
///
/// [`EngineError::TargetMissing`] when the path is missing, not a directory
/// or unreadable.
pub async fn prepare(
    target: &MediaTarget,
    global_exclude: &[String],
) -> Result<Source, EngineError> {
    let root = target.path.clone();
    let missing = |why: String| {
        EngineError::TargetMissing(format!(
            "media directory {} {why}; check media_backup.paths",
            root.display()
        ))
    };
    match fs::metadata(&root) {
        Err(e) => return Err(missing(format!("cannot be read ({e})"))),
        Ok(meta) if !meta.is_dir() => return Err(missing("is not a directory".into())),
        Ok(_) => {}
    }
    if let Err(e) = fs::read_dir(&root) {
        return Err(missing(format!("cannot be listed ({e})")));
    }
    let excludes = globs(global_exclude.iter().chain(&target.exclude))?;
    Ok(Source {
        engine: "media",
        format: "tar archive",
        extension: "tar",
        server_version: None,
        tool_version: None,
        producer: Box::new(move |out| archive(&root, &excludes, out)),
    })
}

fn globs<'a>(patterns: impl Iterator<Item = &'a String>) -> Result<GlobSet, EngineError> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = Glob::new(pattern).map_err(|e| {
            EngineError::TargetMissing(format!("bad exclude glob {pattern:?}: {e}"))
        })?;
        builder.add(glob);
    }
    builder
        .build()
        .map_err(|e| EngineError::TargetMissing(format!("bad exclude globs: {e}")))
}

/// Writes the tree under `root` as a tar stream, entries relative to it,
/// sorted by name so that equal trees give equal archives.
fn archive(
    root: &Path,
    excludes: &GlobSet,
    out: &mut dyn Write,
) -> Result<SourceStats, EngineError> {
    let mut tar = Builder::new(out);
    tar.mode(HeaderMode::Complete);
    tar.follow_symlinks(false);
    let mut stats = SourceStats {
        files: Some(0),
        warnings: Vec::new(),
    };
    let mut walk = WalkDir::new(root)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walk.next() {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).display().to_string();
            EngineError::Io {
                context: format!("reading {path}"),
                source: e.into(),
            }
        })?;
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        if excludes.is_match(rel) {
            if entry.file_type().is_dir() {
                walk.skip_current_dir();
            }
            continue;
        }
        let kind = entry.file_type();
        if kind.is_dir() || kind.is_file() || kind.is_symlink() {
            tar.append_path_with_name(entry.path(), rel).map_err(|e| {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    EngineError::Output(e)
                } else {
                    EngineError::Io {
                        context: format!("archiving {}", entry.path().display()),
                        source: e,
                    }
                }
            })?;
            if !kind.is_dir() {
                stats.files = stats.files.map(|n| n + 1);
            }
            if kind.is_symlink()
                && let Ok(link) = fs::read_link(entry.path())
                && !contained(&rel.parent().unwrap_or(Path::new("")).join(&link))
            {
                let warning = format!(
                    "symlink {} points outside the directory ({}); `restore media` refuses \
                     archives with such links, so restore this one with tar",
                    entry.path().display(),
                    link.display()
                );
                tracing::warn!("{warning}");
                stats.warnings.push(warning);
            }
        } else {
            let warning = format!(
                "skipped {} (socket, fifo or device)",
                entry.path().display()
            );
            tracing::warn!("{warning}");
            stats.warnings.push(warning);
        }
    }
    tar.finish().map_err(EngineError::Output)?;
    Ok(stats)
}

/// Whether `path` is a plain relative path inside the archive root.
pub(crate) fn contained(path: &Path) -> bool {
    let mut depth: usize = 0;
    for part in path.components() {
        match part {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_contained() {
        for ok in ["a", "a/b", "./a", "a/../b", "a/b/../../c"] {
            assert!(contained(Path::new(ok)), "{ok}");
        }
        for bad in ["/etc/passwd", "..", "../x", "a/../../x", "a/b/../../../x"] {
            assert!(!contained(Path::new(bad)), "{bad}");
        }
    }
}

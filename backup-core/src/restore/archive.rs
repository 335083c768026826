//! The rules every entry of a media archive must keep before it is
//! restored (and before `verify` calls an archive whole): archives are
//! input an attacker may have shaped, so a lexical check is not enough.
//!
//! The restore root starts empty and every link in it comes from the
//! archive, so the links recorded here are all the links there are: a
//! path is resolved through them exactly as the kernel would.
//!
//! - An entry's path is relative, without `..`, and never passes through
//!   a link restored before it: nothing is written through a link.
//! - An entry never replaces an earlier one.
//! - A symlink's target is relative and resolves, through the links
//!   restored so far, inside the root; and every earlier link still does
//!   once this one exists (a later link can change where an earlier one
//!   leads).
//! - A hard link names a regular file restored before it.
//! - Only regular files (sparse ones too), directories and links.

use std::{
    collections::HashMap,
    io::{self, Read},
    path::{Component, Path, PathBuf},
};

/// How many links one resolution may follow, as the kernel's limit.
const MAX_HOPS: usize = 40;

/// What an entry is, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A regular file (sparse or not).
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link to an earlier regular file.
    HardLink,
}

/// The entries admitted so far.
#[derive(Debug, Default)]
pub(crate) struct Rules {
    /// Every admitted path (as components) and its kind.
    kinds: HashMap<Vec<String>, Kind>,
    /// Symlinks: path → target as written.
    links: HashMap<Vec<String>, PathBuf>,
    /// Path → the links whose resolution passed through it: a link made
    /// there later changes where they lead.
    through: HashMap<Vec<String>, Vec<Vec<String>>>,
}

/// The components of a relative archive path; `None` when it is absolute,
/// climbs with `..`, is empty, or is not UTF-8.
fn components(path: &Path) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(name) => out.push(name.to_str()?.to_string()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

impl Rules {
    /// Checks entry `path` of `kind` (`link`: a link's target) against the
    /// rules and records it.
    ///
    /// # Errors
    ///
    /// Why the entry may not be restored, naming it.
    pub(crate) fn admit(
        &mut self,
        path: &Path,
        kind: Kind,
        link: Option<&Path>,
    ) -> Result<(), String> {
        let shown = path.display();
        let parts = components(path).ok_or_else(|| {
            format!("the archive's entry {shown} lies outside the restore directory")
        })?;
        for depth in 1..parts.len() {
            if self.links.contains_key(&parts[..depth]) {
                return Err(format!(
                    "the archive's entry {shown} would be written through the link {}",
                    parts[..depth].join("/")
                ));
            }
        }
        if let Some(earlier) = self.kinds.get(&parts) {
            // A directory may be listed twice (tar does for its own).
            if !(kind == Kind::Dir && *earlier == Kind::Dir) {
                return Err(format!(
                    "the archive's entry {shown} would replace an earlier entry of that name"
                ));
            }
        }
        match kind {
            Kind::File | Kind::Dir => {}
            Kind::HardLink => {
                let target = link.ok_or_else(|| format!("link {shown} has no target"))?;
                let named = components(target).ok_or_else(|| {
                    format!(
                        "the archive's hard link {shown} names {} outside it",
                        target.display()
                    )
                })?;
                let resolved = self.resolve(Vec::new(), &named, 0, &mut Vec::new()).ok_or_else(|| {
                    format!(
                        "the archive's hard link {shown} names {} outside the restore directory",
                        target.display()
                    )
                })?;
                if self.kinds.get(&resolved) != Some(&Kind::File) {
                    return Err(format!(
                        "the archive's hard link {shown} names {}, which is not a file it holds",
                        target.display()
                    ));
                }
            }
            Kind::Symlink => {
                let target = link.ok_or_else(|| format!("link {shown} has no target"))?;
                if target.is_absolute() {
                    return Err(format!(
                        "the archive's link {shown} points outside the restore directory \
                         (to the absolute path {})",
                        target.display()
                    ));
                }
                self.links.insert(parts.clone(), target.to_path_buf());
                // This link, and every earlier one that passed through its
                // path, must lead inside the root now.
                let mut affected = vec![parts.clone()];
                affected.extend(self.through.get(&parts).cloned().unwrap_or_default());
                let mut visits = Vec::new();
                for link in &affected {
                    let mut visited = Vec::new();
                    if self.resolve_link(link, &mut visited).is_none() {
                        self.links.remove(&parts);
                        return Err(if *link == parts {
                            format!(
                                "the archive's link {shown} points outside the restore directory ({})",
                                target.display()
                            )
                        } else {
                            format!(
                                "the archive's link {shown} would make the link {} point outside \
                                 the restore directory",
                                link.join("/")
                            )
                        });
                    }
                    visits.push((link.clone(), visited));
                }
                for (link, visited) in visits {
                    for path in visited {
                        self.through.entry(path).or_default().push(link.clone());
                    }
                }
            }
        }
        self.kinds.insert(parts, kind);
        Ok(())
    }

    /// Where the link at `link` leads, inside the root; `None` when it
    /// leaves it (or loops). Every path the walk passes is added to
    /// `visited`.
    fn resolve_link(&self, link: &[String], visited: &mut Vec<Vec<String>>) -> Option<Vec<String>> {
        let walk = steps(self.links.get(link)?)?;
        let parent = link[..link.len() - 1].to_vec();
        self.resolve(parent, &walk, 0, visited)
    }

    /// Walks `walk` (names and `..`) from `from`, following the recorded
    /// links as the kernel would; `None` when the walk leaves the root or
    /// follows too many links.
    fn resolve(
        &self,
        from: Vec<String>,
        walk: &[String],
        hops: usize,
        visited: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        let mut here = from;
        for step in walk {
            if step == ".." {
                here.pop()?;
                continue;
            }
            here.push(step.clone());
            visited.push(here.clone());
            if let Some(target) = self.links.get(&here) {
                if hops >= MAX_HOPS {
                    return None;
                }
                let inner = steps(target)?;
                here.pop();
                here = self.resolve(here, &inner, hops + 1, visited)?;
            }
        }
        Some(here)
    }
}

/// A link target as steps: names and `..`; `None` for an absolute one.
fn steps(target: &Path) -> Option<Vec<String>> {
    let mut steps = Vec::new();
    for c in target.components() {
        match c {
            Component::Normal(name) => steps.push(name.to_str()?.to_string()),
            Component::CurDir => {}
            Component::ParentDir => steps.push("..".into()),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(steps)
}

/// Why an archive entry cannot be restored.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The archive could not be read.
    Read(io::Error),
    /// The entry breaks a rule: what, naming it.
    Rule(String),
}

/// Reads an entry's name, kind and link target and admits it: `Ok(None)`
/// for a header that describes no file (a PAX global header), else its
/// path and kind.
pub(crate) fn admit_entry<R: Read>(
    rules: &mut Rules,
    entry: &tar::Entry<'_, R>,
) -> Result<Option<(PathBuf, Kind)>, Refusal> {
    let path = entry.path().map_err(Refusal::Read)?.into_owned();
    let kind = match entry.header().entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            Kind::File
        }
        tar::EntryType::Directory => Kind::Dir,
        tar::EntryType::Symlink => Kind::Symlink,
        tar::EntryType::Link => Kind::HardLink,
        tar::EntryType::XGlobalHeader => return Ok(None),
        other => {
            return Err(Refusal::Rule(format!(
                "the archive has an entry of an unexpected type ({other:?}) at {}",
                path.display()
            )));
        }
    };
    let link = match kind {
        Kind::Symlink | Kind::HardLink => Some(
            entry
                .link_name()
                .map_err(Refusal::Read)?
                .ok_or_else(|| Refusal::Rule(format!("link {} has no target", path.display())))?
                .into_owned(),
        ),
        Kind::File | Kind::Dir => None,
    };
    rules
        .admit(&path, kind, link.as_deref())
        .map_err(Refusal::Rule)?;
    Ok(Some((path, kind)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit_all(entries: &[(&str, Kind, Option<&str>)]) -> Result<(), String> {
        let mut rules = Rules::default();
        for (path, kind, link) in entries {
            rules.admit(Path::new(path), *kind, link.map(Path::new))?;
        }
        Ok(())
    }

    #[test]
    fn links_inside_the_root_are_admitted() {
        admit_all(&[
            ("photos", Kind::Dir, None),
            ("photos/a.jpg", Kind::File, None),
            ("latest.jpg", Kind::Symlink, Some("photos/a.jpg")),
            ("photos/up", Kind::Symlink, Some("..")),
            ("here", Kind::Symlink, Some(".")),
            ("copy.jpg", Kind::HardLink, Some("photos/a.jpg")),
            ("dangling", Kind::Symlink, Some("not/yet")),
        ])
        .expect("all inside");
    }

    #[test]
    fn links_that_escape_through_other_links_are_refused() {
        let d = "d1/d1/d1/d1/d1/d1/d1/d1";
        let shadow = format!("{d}/shadow");
        let escape = "../../../../../../../../etc/shadow";
        let err = admit_all(&[
            ("d1", Kind::Symlink, Some(".")),
            (&shadow, Kind::Symlink, Some(escape)),
        ])
        .unwrap_err();
        assert!(err.contains("written through the link d1"), "{err}");
        let err = admit_all(&[
            ("sub", Kind::Dir, None),
            ("sub/l", Kind::Symlink, Some("..")),
            ("sub/l/esc", Kind::Symlink, Some("..")),
        ])
        .unwrap_err();
        assert!(err.contains("through the link sub/l"), "{err}");
        // A later link that turns an earlier, harmless one outward.
        let err = admit_all(&[
            ("l", Kind::Symlink, Some("b/..")),
            ("b", Kind::Symlink, Some(".")),
        ])
        .unwrap_err();
        assert!(err.contains("would make the link l point outside"), "{err}");
        for (path, link) in [("x", "../x"), ("x", "/etc/passwd"), ("a", "a/../..")] {
            assert!(
                admit_all(&[(path, Kind::Symlink, Some(link))]).is_err(),
                "{path} -> {link}"
            );
        }
        // Links that loop never resolve.
        assert!(
            admit_all(&[
                ("a", Kind::Symlink, Some("b")),
                ("b", Kind::Symlink, Some("a/x"))
            ])
            .is_err()
        );
    }

    #[test]
    fn paths_outside_replacements_and_bad_hard_links_are_refused() {
        for bad in ["../x", "/etc/passwd", "a/../../x", "", "."] {
            assert!(admit_all(&[(bad, Kind::File, None)]).is_err(), "{bad}");
        }
        assert!(admit_all(&[("a", Kind::File, None), ("a", Kind::Symlink, Some("."))]).is_err());
        assert!(admit_all(&[("a", Kind::Dir, None), ("a", Kind::Dir, None)]).is_ok());
        assert!(admit_all(&[("h", Kind::HardLink, Some("missing"))]).is_err());
        assert!(
            admit_all(&[
                ("l", Kind::Symlink, Some(".")),
                ("h", Kind::HardLink, Some("l/../../etc/passwd"))
            ])
            .is_err()
        );
    }
}

//! Where plugins are looked for: the pipeline's `plugin_dir`, then each directory of
//! `CAUDAL_PLUGIN_PATH` (colon-separated), then the directory of the running executable.
//! The first directory holding `libcaudal_NAME.so` wins; later files of the same name are
//! shadowed, as with `PATH`.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::error::{HostError, Result};

/// Environment variable with extra plugin directories, colon-separated.
pub const PLUGIN_PATH_ENV: &str = "CAUDAL_PLUGIN_PATH";

const PREFIX: &str = "caudal_";

/// The file name of connector `name` on this platform (`libcaudal_NAME.so` on Linux).
pub fn plugin_file_name(name: &str) -> String {
    format!(
        "{}{PREFIX}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// The connector name of a plugin file name, if it is one.
fn name_of_file(file: &str) -> Option<&str> {
    let name = file
        .strip_prefix(std::env::consts::DLL_PREFIX)?
        .strip_prefix(PREFIX)?
        .strip_suffix(std::env::consts::DLL_SUFFIX)?;
    valid_name(name).then_some(name)
}

/// Connector names are file-name fragments: no separators, no dots, nothing to escape.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A plugin file found on the search path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFile {
    /// Connector name from the file name.
    pub name: String,
    /// The file.
    pub path: PathBuf,
}

/// The ordered list of directories plugins are looked for in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPath {
    dirs: Vec<PathBuf>,
}

impl SearchPath {
    /// The search path of this process: `plugin_dir` (the pipeline's, if any), then
    /// `CAUDAL_PLUGIN_PATH`, then the directory of the running executable.
    pub fn new(plugin_dir: Option<&Path>) -> SearchPath {
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        SearchPath::from_parts(plugin_dir, std::env::var_os(PLUGIN_PATH_ENV), exe_dir)
    }

    /// The search path from explicit parts (what [`SearchPath::new`] reads from the process).
    /// Empty entries of `env_path` are ignored; a directory listed twice is searched once.
    pub fn from_parts(
        plugin_dir: Option<&Path>,
        env_path: Option<OsString>,
        exe_dir: Option<PathBuf>,
    ) -> SearchPath {
        let mut dirs = Vec::new();
        dirs.extend(plugin_dir.map(Path::to_path_buf));
        if let Some(env_path) = env_path {
            dirs.extend(std::env::split_paths(&env_path).filter(|p| !p.as_os_str().is_empty()));
        }
        dirs.extend(exe_dir);
        let mut seen = HashSet::new();
        dirs.retain(|d| seen.insert(d.clone()));
        SearchPath { dirs }
    }

    /// Only these directories, in order.
    pub fn from_dirs(dirs: Vec<PathBuf>) -> SearchPath {
        SearchPath { dirs }
    }

    /// The directories, in search order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The file of connector `name`: the first directory that has it.
    pub fn find(&self, name: &str) -> Result<PathBuf> {
        if !valid_name(name) {
            return Err(HostError::InvalidName {
                name: name.to_owned(),
            });
        }
        let file = plugin_file_name(name);
        self.dirs
            .iter()
            .map(|d| d.join(&file))
            .find(|p| p.is_file())
            .ok_or_else(|| HostError::NotFound {
                name: name.to_owned(),
                file,
                searched: if self.dirs.is_empty() {
                    "no directories (empty search path)".to_owned()
                } else {
                    self.dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
    }

    /// Every plugin file on the path, sorted by name; a name found in an earlier directory
    /// shadows the same name later. Directories that do not exist are skipped.
    pub fn list(&self) -> Result<Vec<PluginFile>> {
        let mut found: Vec<PluginFile> = Vec::new();
        for dir in &self.dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(HostError::ListDir {
                        dir: dir.clone(),
                        message: e.to_string(),
                    });
                }
            };
            let mut here = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| HostError::ListDir {
                    dir: dir.clone(),
                    message: e.to_string(),
                })?;
                let file_name = entry.file_name();
                let Some(name) = file_name.to_str().and_then(name_of_file) else {
                    continue;
                };
                if !entry.path().is_file() || found.iter().any(|f| f.name == name) {
                    continue;
                }
                here.push(PluginFile {
                    name: name.to_owned(),
                    path: entry.path(),
                });
            }
            found.extend(here);
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(plugin_file_name(name));
        std::fs::write(&p, b"not really a library").unwrap();
        p
    }

    #[test]
    fn order_is_plugin_dir_then_env_then_exe_dir() {
        let (a, b, c, d) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let env = std::env::join_paths([b.path(), c.path()]).unwrap();
        let path = SearchPath::from_parts(Some(a.path()), Some(env), Some(d.path().to_path_buf()));
        assert_eq!(path.dirs(), [a.path(), b.path(), c.path(), d.path()]);

        let in_exe = touch(d.path(), "duckdb");
        assert_eq!(path.find("duckdb").unwrap(), in_exe);
        let in_env = touch(c.path(), "duckdb");
        assert_eq!(path.find("duckdb").unwrap(), in_env);
        let in_plugin_dir = touch(a.path(), "duckdb");
        assert_eq!(path.find("duckdb").unwrap(), in_plugin_dir);

        touch(d.path(), "redis");
        let listed = path.list().unwrap();
        assert_eq!(
            listed,
            vec![
                PluginFile {
                    name: "duckdb".into(),
                    path: in_plugin_dir
                },
                PluginFile {
                    name: "redis".into(),
                    path: d.path().join(plugin_file_name("redis"))
                },
            ]
        );
    }

    #[test]
    fn empty_env_entries_and_duplicates_are_ignored() {
        let a = tempfile::tempdir().unwrap();
        let env = OsString::from(format!("::{}:", a.path().display()));
        let path = SearchPath::from_parts(Some(a.path()), Some(env), None);
        assert_eq!(path.dirs(), [a.path()]);
    }

    #[test]
    fn missing_plugin_names_file_and_directories() {
        let a = tempfile::tempdir().unwrap();
        let path = SearchPath::from_dirs(vec![
            a.path().to_path_buf(),
            PathBuf::from("/nonexistent/x"),
        ]);
        let err = path.find("mysql").unwrap_err().to_string();
        assert!(err.contains(&plugin_file_name("mysql")), "{err}");
        assert!(
            err.contains("/nonexistent/x") && err.contains(&a.path().display().to_string()),
            "{err}"
        );
        assert!(path.list().unwrap().is_empty());
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        let path = SearchPath::from_dirs(vec![]);
        for bad in ["../x", "a/b", "", "Dúck", "a.b"] {
            assert!(
                matches!(path.find(bad), Err(HostError::InvalidName { .. })),
                "{bad}"
            );
        }
        assert_eq!(name_of_file(&plugin_file_name("my_sql2")), Some("my_sql2"));
        assert_eq!(name_of_file("libcaudal.so"), None);
        assert_eq!(name_of_file("libcaudal_connector.rlib"), None);
    }
}

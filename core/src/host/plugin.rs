//! Loading one plugin file: dlopen, entry symbol, ABI version and table-size check, and the
//! registry that loads each connector once.
//!
//! The check reads only the two header fields (`abi_version`, `struct_size`) before anything
//! else in the table: their position is the one thing every ABI version shares.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use caudal_connector::abi::{ABI_VERSION, ConnectorVTable, ENTRY_SYMBOL};
use caudal_connector::{Capabilities, OpenContext, PluginInfo};

use super::connection::Connection;
use super::discovery::SearchPath;
use super::error::{HostError, Result};

/// Highest ABI version probed for when a plugin lacks this host's entry symbol, to name the
/// version it was built for.
const MAX_PROBED_ABI: u32 = 64;

type EntryFn = unsafe extern "C" fn() -> *const ConnectorVTable;

/// The two fields every ABI version's table starts with.
#[repr(C)]
struct Header {
    abi_version: u32,
    struct_size: u32,
}

struct Loaded {
    info: PluginInfo,
    path: PathBuf,
    vtable: &'static ConnectorVTable,
}

/// A loaded, checked plugin. Cheap to clone; the library stays loaded for the process's life.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<Loaded>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("info", &self.inner.info)
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Plugin {
    /// Loads the plugin at `path` and checks its ABI version and table size. On any error the
    /// library is closed again: nothing stays loaded.
    pub fn load(path: &Path) -> Result<Plugin> {
        // SAFETY: loading a library runs its initialisers; caudal plugins are Rust cdylibs
        // whose only initialisers are the standard library's.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| HostError::Load {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let checked =
            entry_table(&lib, path).and_then(|table| Ok((table, checked_info(table, path)?)));
        match checked {
            Ok((vtable, info)) => {
                // From here on the table and its strings are referenced for the process's life.
                std::mem::forget(lib);
                Ok(Plugin {
                    inner: Arc::new(Loaded {
                        info,
                        path: path.to_path_buf(),
                        vtable,
                    }),
                })
            }
            Err(e) => {
                // Explicitly unloaded: a refused plugin must not stay mapped.
                drop(lib);
                Err(e)
            }
        }
    }

    /// Name, version, ABI version and capabilities.
    pub fn info(&self) -> &PluginInfo {
        &self.inner.info
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.inner.info.name
    }

    /// What the plugin can do.
    pub fn capabilities(&self) -> Capabilities {
        self.inner.info.capabilities
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub(super) fn vtable(&self) -> &'static ConnectorVTable {
        self.inner.vtable
    }

    /// Opens a connection. `config_json` is the connection's keys as a JSON object (without
    /// `connector`); the plugin deserializes it into its own typed config. Blocking.
    pub fn open(&self, context: &OpenContext, config_json: &str) -> Result<Connection> {
        Connection::open(self.clone(), context, config_json)
    }
}

/// Finds the entry symbol and checks the table header.
fn entry_table(lib: &libloading::Library, path: &Path) -> Result<&'static ConnectorVTable> {
    let symbol = format!("{ENTRY_SYMBOL}\0");
    // SAFETY: the symbol, if present, is a caudal entry point of this ABI version, whose type
    // is `EntryFn` by the ABI's definition.
    let entry = match unsafe { lib.get::<EntryFn>(symbol.as_bytes()) } {
        Ok(f) => *f,
        Err(_) => return Err(other_abi(lib, path)),
    };
    // SAFETY: calling the entry point has no preconditions; it returns a pointer to a static.
    let table = unsafe { entry() };
    if table.is_null() {
        return Err(HostError::Malformed {
            path: path.to_path_buf(),
            what: "the entry point returned null".into(),
        });
    }
    // SAFETY: every ABI version's table starts with this header; reading it needs no more.
    let header = unsafe { std::ptr::read(table.cast::<Header>()) };
    check_header(&header, path)?;
    // SAFETY: version and size checked: the table has at least this host's layout, and it is
    // static data of a library that is never unloaded once this function succeeds.
    Ok(unsafe { &*table })
}

/// Refuses a table of another ABI version, or one smaller than this host's table.
fn check_header(header: &Header, path: &Path) -> Result<()> {
    if header.abi_version != ABI_VERSION {
        return Err(HostError::AbiMismatch {
            path: path.to_path_buf(),
            plugin_abi: header.abi_version,
            host_abi: ABI_VERSION,
        });
    }
    let host_size = std::mem::size_of::<ConnectorVTable>() as u32;
    if header.struct_size < host_size {
        return Err(HostError::TableTooSmall {
            path: path.to_path_buf(),
            plugin_size: header.struct_size,
            host_size,
            abi: ABI_VERSION,
        });
    }
    Ok(())
}

/// The error for a library without this host's entry symbol: names the version it has.
fn other_abi(lib: &libloading::Library, path: &Path) -> HostError {
    for version in (0..=MAX_PROBED_ABI).filter(|v| *v != ABI_VERSION) {
        let name = format!("caudal_connector_v{version}\0");
        // SAFETY: only the symbol's presence is checked; it is never called.
        if unsafe { lib.get::<*const ()>(name.as_bytes()) }.is_ok() {
            return HostError::AbiMismatch {
                path: path.to_path_buf(),
                plugin_abi: version,
                host_abi: ABI_VERSION,
            };
        }
    }
    HostError::NotAPlugin {
        path: path.to_path_buf(),
        symbol: ENTRY_SYMBOL,
    }
}

fn checked_info(vtable: &'static ConnectorVTable, path: &Path) -> Result<PluginInfo> {
    let malformed = |what: &str| HostError::Malformed {
        path: path.to_path_buf(),
        what: what.to_owned(),
    };
    // SAFETY: the strings are static data of the (never unloaded) plugin.
    let name = unsafe { vtable.name.to_str() }.ok_or_else(|| malformed("its name is not UTF-8"))?;
    // SAFETY: as above.
    let version =
        unsafe { vtable.version.to_str() }.ok_or_else(|| malformed("its version is not UTF-8"))?;
    Ok(PluginInfo {
        name: name.to_owned(),
        version: version.to_owned(),
        abi_version: vtable.abi_version,
        capabilities: Capabilities(vtable.capabilities),
    })
}

/// Loads connectors by name from a search path, each once; shared by the whole process.
#[derive(Debug)]
pub struct PluginRegistry {
    search: SearchPath,
    loaded: Mutex<HashMap<String, Plugin>>,
}

impl PluginRegistry {
    /// A registry over `search`.
    pub fn new(search: SearchPath) -> PluginRegistry {
        PluginRegistry {
            search,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The search path.
    pub fn search_path(&self) -> &SearchPath {
        &self.search
    }

    /// The plugin of connector `name`, loading it on first use. A plugin whose reported name
    /// differs from its file name is refused. Errors are not cached: a fixed plugin file is
    /// picked up by the next call.
    pub fn get(&self, name: &str) -> Result<Plugin> {
        if let Some(p) = self.lock().get(name) {
            return Ok(p.clone());
        }
        let path = self.search.find(name)?;
        let plugin = Plugin::load(&path)?;
        if plugin.name() != name {
            return Err(HostError::NameMismatch {
                path,
                expected: name.to_owned(),
                found: plugin.name().to_owned(),
            });
        }
        Ok(self.lock().entry(name.to_owned()).or_insert(plugin).clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Plugin>> {
        // The map holds plain values; a panic elsewhere while it was locked leaves it valid.
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Connection, Reader};

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}

    #[test]
    fn handles_move_to_blocking_threads() {
        // Plugins and the registry are shared between tasks; connections and readers move to
        // the blocking thread that uses them.
        send_sync::<Plugin>();
        send_sync::<PluginRegistry>();
        send::<Connection>();
        send::<Reader>();
    }

    #[test]
    fn header_check_refuses_other_versions_and_short_tables() {
        let path = Path::new("/p/libcaudal_x.so");
        let size = std::mem::size_of::<ConnectorVTable>() as u32;
        assert!(
            check_header(
                &Header {
                    abi_version: ABI_VERSION,
                    struct_size: size
                },
                path
            )
            .is_ok()
        );
        // A newer minor version appends functions: a larger table is fine.
        assert!(
            check_header(
                &Header {
                    abi_version: ABI_VERSION,
                    struct_size: size + 16
                },
                path
            )
            .is_ok()
        );
        let err = check_header(
            &Header {
                abi_version: ABI_VERSION,
                struct_size: size - 8,
            },
            path,
        )
        .unwrap_err();
        assert!(matches!(err, HostError::TableTooSmall { .. }), "{err:?}");
        assert!(err.to_string().contains(&format!("{}", size - 8)), "{err}");
        let err = check_header(
            &Header {
                abi_version: 0,
                struct_size: size,
            },
            path,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("ABI version 0")
                && msg.contains("ABI version 1")
                && msg.contains("/p/libcaudal_x.so"),
            "{msg}"
        );
    }

    #[test]
    fn a_missing_file_is_a_load_error_naming_it() {
        let err = Plugin::load(Path::new("/nonexistent/libcaudal_x.so")).unwrap_err();
        assert!(matches!(err, HostError::Load { .. }), "{err:?}");
        assert!(
            err.to_string().contains("/nonexistent/libcaudal_x.so"),
            "{err}"
        );
    }
}

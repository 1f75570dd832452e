//! Test plugin `wrongabi`: what a plugin built against a future SDK (ABI major version 2)
//! looks like to this host. It exports `caudal_connector_v2` — not `caudal_connector_v1` —
//! returning a table whose header says version 2. The host must refuse it with an error that
//! names both versions and the file, and keep nothing loaded.

use caudal_connector::abi::ConnectorVTable;
use caudal_connector::{Capabilities, Connector, OpenContext, Result};

/// The ABI version this plugin claims.
pub const CLAIMED_ABI_VERSION: u32 = 2;

/// A connector that does nothing; only its exported table matters.
pub struct WrongAbi;

impl Connector for WrongAbi {
    type Config = serde::de::IgnoredAny;
    const NAME: &'static str = "wrongabi";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const CAPABILITIES: Capabilities = Capabilities::SOURCE;

    fn open(_config: Self::Config, _context: &OpenContext) -> Result<WrongAbi> {
        Ok(WrongAbi)
    }
}

/// The entry point of ABI version 2 (see the crate documentation).
#[unsafe(no_mangle)]
pub extern "C" fn caudal_connector_v2() -> *const ConnectorVTable {
    static VTABLE: ConnectorVTable = {
        let mut table = ConnectorVTable::new::<WrongAbi>();
        table.abi_version = CLAIMED_ABI_VERSION;
        table
    };
    &VTABLE
}

//! Helpers shared by the test server's tests: a server with a few databases and tiberius clients.

#![allow(dead_code)]

use caudal_tds_server::TdsServer;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

pub const USER: &str = "sa";
pub const PASSWORD: &str = "Secret#123";

pub type Conn = Client<Compat<TcpStream>>;

pub async fn server(databases: &[&str]) -> TdsServer {
    let mut b = TdsServer::builder().credentials(USER, PASSWORD);
    for d in databases {
        b = b.database(d);
    }
    b.start().await.expect("test server starts")
}

pub fn config(server: &TdsServer, database: &str, password: &str) -> Config {
    let mut config = Config::new();
    config.host("127.0.0.1");
    config.port(server.addr().port());
    config.authentication(AuthMethod::sql_server(USER, password));
    config.database(database);
    config.encryption(EncryptionLevel::NotSupported);
    config
}

pub async fn try_connect(server: &TdsServer, database: &str) -> tiberius::Result<Conn> {
    let tcp = TcpStream::connect(server.addr()).await?;
    tcp.set_nodelay(true)?;
    Client::connect(config(server, database, PASSWORD), tcp.compat_write()).await
}

pub async fn connect(server: &TdsServer, database: &str) -> Conn {
    try_connect(server, database)
        .await
        .expect("tiberius connects to the test server")
}

/// The SQL Server error number of a failed call.
pub fn error_number<T: std::fmt::Debug>(r: tiberius::Result<T>) -> u32 {
    match r {
        Err(tiberius::error::Error::Server(e)) => e.code(),
        other => panic!("expected a server error, got {other:?}"),
    }
}

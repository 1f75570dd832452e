//! `Pipeline::from_path` reads `${VAR}` from the process environment. One test in this binary,
//! so that changing the environment cannot race another test's reads.

use caudal_config::{ConfigError, Pipeline};

const VAR: &str = "CAUDAL_CONFIG_TEST_PROCESS_ENV_PASSWORD";
const SECRET: &str = "proc-env-S3cret";

#[test]
fn from_path_resolves_process_environment_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.toml");
    let text = format!(
        "[pipeline]\nname = \"p\"\n\n[connections.a]\nconnector = \"mysql\"\nurl = \"mysql://u:${{{VAR}}}@h/db\"\n\n\
         [connections.b]\nconnector = \"duckdb\"\npath = \"b.duckdb\"\n\n[[streams]]\nfrom = \"a\"\ntable = \"t\"\nto = \"b\"\n"
    );
    std::fs::write(&path, text).expect("write");

    let err = Pipeline::from_path(&path).expect_err("variable not set yet");
    assert!(
        matches!(&err, ConfigError::MissingEnv { var, .. } if var == VAR),
        "{err}"
    );
    // `url = "mysql://u:` is 17 characters: the `$` is column 18.
    assert_eq!((err.line(), err.column()), (Some(6), Some(18)));

    // SAFETY: this binary runs this one test, and nothing else in the process reads or writes
    // the environment concurrently.
    unsafe { std::env::set_var(VAR, SECRET) };
    let p = Pipeline::from_path(&path).expect("variable set");
    let url = p
        .connection("a")
        .and_then(|c| c.setting("url"))
        .expect("url");
    assert_eq!(
        url.resolved().expose().as_str(),
        Some(format!("mysql://u:{SECRET}@h/db").as_str())
    );
    assert!(!format!("{p:?}").contains(SECRET));
    assert_eq!(p.journal_dir(), dir.path().join("journal"));
    // SAFETY: as above.
    unsafe { std::env::remove_var(VAR) };
}

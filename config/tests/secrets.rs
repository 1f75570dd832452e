//! A secret passed through the environment or a file appears in no Debug output, no redacted
//! view and no error text: these tests grep for it.

use std::ffi::OsString;

use caudal_config::Pipeline;

const ENV_SECRET: &str = "Zq7-env-S3CRET-value";
const FILE_SECRET: &str = "Kp2-file-S3CRET-value";

fn env(var: &str) -> Option<OsString> {
    (var == "DB_PASSWORD").then(|| ENV_SECRET.into())
}

fn pipeline_text(extra_stream_line: &str) -> String {
    format!(
        r#"[pipeline]
name = "leak-check"

[connections.shop]
connector = "mysql"
url = "mysql://etl:${{DB_PASSWORD}}@127.0.0.1:3306/shop"
options = {{ ssl_password = "${{DB_PASSWORD}}", retries = 2 }}

[connections.cache]
connector = "redis"
url = "redis://127.0.0.1:6379/0"
password = "file:secret.txt"

[[streams]]
from = "shop"
table = "items"
to = "cache"
{extra_stream_line}
"#
    )
}

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains(ENV_SECRET),
        "the environment secret leaked into {what}:\n{text}"
    );
    assert!(
        !text.contains(FILE_SECRET),
        "the file secret leaked into {what}:\n{text}"
    );
}

fn workspace() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("secret.txt"), format!("{FILE_SECRET}\r\n")).expect("write");
    let origin = dir.path().join("leak-check.toml");
    (dir, origin)
}

#[test]
fn secrets_reach_the_plugin_config_and_nothing_else() {
    let (_dir, origin) = workspace();
    let p = Pipeline::from_str_with_env(&pipeline_text(""), &origin, env).expect("valid");

    // The plugin gets the values in clear...
    let shop = p
        .connection("shop")
        .expect("shop")
        .plugin_config()
        .into_exposed();
    let shop_text = toml::to_string(&shop).expect("serializable");
    assert!(shop_text.contains(ENV_SECRET));
    let cache = p
        .connection("cache")
        .expect("cache")
        .plugin_config()
        .into_exposed();
    assert_eq!(
        cache.get("password").and_then(|v| v.as_str()),
        Some(FILE_SECRET)
    );

    // ...and nothing else shows them.
    assert_clean("Debug of the pipeline", &format!("{p:?}"));
    assert_clean("alternate Debug of the pipeline", &format!("{p:#?}"));
    for c in p.connections() {
        assert_clean("Debug of a connection", &format!("{c:?}"));
        assert_clean(
            "Debug of the plugin config",
            &format!("{:?}", c.plugin_config()),
        );
        assert_clean(
            "Display of the plugin config",
            &format!("{}", c.plugin_config()),
        );
        let redacted = toml::to_string(&c.redacted()).expect("serializable");
        assert_clean("the redacted view", &redacted);
        for (key, setting) in c.settings() {
            assert_clean(key, &format!("{setting:?} {}", setting.resolved()));
        }
    }
    let redacted = toml::to_string(&p.connection("shop").expect("shop").redacted()).expect("toml");
    assert!(
        redacted.contains("mysql://etl:***@127.0.0.1:3306/shop"),
        "{redacted}"
    );
    assert!(redacted.contains("ssl_password = \"***\""), "{redacted}");
    assert!(redacted.contains("retries = 2"), "{redacted}");

    // A driver error that echoes the connection string is scrubbed.
    let driver_error = format!(
        "connect mysql://etl:{ENV_SECRET}@127.0.0.1:3306/shop: access denied; redis AUTH {FILE_SECRET} failed"
    );
    assert_clean("scrubbed text", &p.scrub(&driver_error));
    assert_eq!(
        p.scrub(&driver_error),
        "connect mysql://etl:***@127.0.0.1:3306/shop: access denied; redis AUTH *** failed"
    );
}

#[test]
fn errors_in_a_pipeline_with_secrets_do_not_show_them() {
    let (_dir, origin) = workspace();
    let broken = [
        "mode = \"merge\"",
        "chunk_rows = \"${DB_PASSWORD}\"",
        "to_ = \"x\"",
        "cursor = \"ts\"",
        "query = \"\"",
    ];
    for line in broken {
        let err = Pipeline::from_str_with_env(&pipeline_text(line), &origin, env)
            .expect_err("broken stream");
        assert_clean("an error message", &format!("{err} {err:?}"));
    }
    // A secret file that cannot be read: the error names the file, never a value.
    let text = pipeline_text("").replace("file:secret.txt", "file:missing.txt");
    let err = Pipeline::from_str_with_env(&text, &origin, env).expect_err("missing file");
    let shown = err.to_string();
    assert!(shown.contains("missing.txt"), "{shown}");
    assert_clean("a secret-file error", &format!("{shown} {err:?}"));
    // A missing variable next to one that is set: only the missing one is named.
    let text = pipeline_text("").replace(
        "url = \"redis://127.0.0.1:6379/0\"",
        "url = \"redis://:${REDIS_PASSWORD}@127.0.0.1:6379/0\"",
    );
    let err = Pipeline::from_str_with_env(&text, &origin, env).expect_err("unset variable");
    assert!(err.to_string().contains("`REDIS_PASSWORD` is not set"));
    assert_clean("a missing-variable error", &format!("{err} {err:?}"));
}

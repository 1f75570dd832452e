//! Whatever the text, loading returns a pipeline or positioned errors: never a panic, never a
//! position outside the file.

use std::ffi::OsString;
use std::path::Path;

use caudal_config::Pipeline;
use proptest::prelude::*;

fn env(var: &str) -> Option<OsString> {
    var.len().is_multiple_of(2).then(|| OsString::from("pw"))
}

fn check(text: &str) {
    let origin = Path::new("/srv/caudal/fuzz.toml");
    if let Err(err) = Pipeline::from_str_with_env(text, origin, env) {
        let lines = text.split('\n').count();
        for problem in err.problems() {
            let location = problem.location().expect("text errors have a position");
            assert!(
                location.line >= 1 && location.line <= lines,
                "{problem} in {text:?}"
            );
            assert!(location.column >= 1, "{problem}");
            assert!(
                problem.to_string().starts_with("/srv/caudal/fuzz.toml:"),
                "{problem}"
            );
        }
    }
}

fn seeds() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds = Vec::new();
    for name in ["ventas.toml", "restaurantes.toml", "cache.toml"] {
        seeds.push(std::fs::read_to_string(dir.join("../pipelines").join(name)).expect("example"));
    }
    let mut malformed: Vec<_> = std::fs::read_dir(dir.join("tests/malformed"))
        .expect("malformed dir")
        .map(|e| e.expect("entry").path())
        .collect();
    malformed.sort();
    for path in malformed {
        seeds.push(std::fs::read_to_string(path).expect("malformed file"));
    }
    seeds
}

/// Edits of valid and invalid pipeline files: the mutations a user's typing makes.
#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, text: String },
    Duplicate { at: usize, len: usize },
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        let n = chars.len().max(1);
        match edit {
            Edit::Delete { at, len } => {
                let start = at % n;
                let end = (start + len).min(chars.len());
                if start < end {
                    chars.drain(start..end);
                }
            }
            Edit::Insert { at, text } => {
                let at = (at % n).min(chars.len());
                chars.splice(at..at, text.chars());
            }
            Edit::Duplicate { at, len } => {
                let start = (at % n).min(chars.len());
                let end = (start + len).min(chars.len());
                let copy: Vec<char> = chars[start..end].to_vec();
                chars.splice(end..end, copy);
            }
        }
    }
    chars.into_iter().collect()
}

fn edit() -> impl Strategy<Value = Edit> {
    let fragments = prop::sample::select(vec![
        "=",
        "\"",
        "'",
        "[",
        "]",
        "[[streams]]\n",
        "{",
        "}",
        ",",
        "\n",
        "${",
        "}",
        "$${X}",
        "file:",
        "*",
        "ñ",
        "mode = \"merge\"\n",
        "to = []\n",
        "0",
        "-1",
        "\"20m\"",
        "#",
        "\\",
        "\"\"\"",
        "[connections.x]\n",
        "from = \"x*\"\n",
        "1979-05-27T07:32:00Z",
        "cron = \"* *\"\n",
    ]);
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), fragments).prop_map(|(at, t)| Edit::Insert {
            at,
            text: t.to_owned()
        }),
        (any::<usize>(), 1usize..80).prop_map(|(at, len)| Edit::Duplicate { at, len }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn edited_pipeline_files_load_or_fail_cleanly(
        seed in prop::sample::select(seeds()),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        check(&apply(&seed, &edits));
    }

    #[test]
    fn arbitrary_text_loads_or_fails_cleanly(text in "\\PC{0,200}") {
        check(&text);
    }
}

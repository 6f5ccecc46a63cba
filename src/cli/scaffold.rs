//! `catpaw-agent runner new NAME --lang rust|python`: a runner project
//! that builds as generated and passes `check-runner`.
//!
//! The templates are in `scaffold/`; `{{name}}` (and for Rust `{{crate}}`,
//! the file name cargo gives the built component) are filled in. Every
//! project gets the WIT this agent serves, copied into its `wit/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The WIT this agent serves, as a project copies it.
const WIT: &str = include_str!("../../wit/runner.wit");

/// A runner's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A cargo project built for wasm32-wasip2.
    Rust,
    /// A componentize-py project.
    Python,
}

/// The project's files: path below its directory, and template.
fn files(lang: Lang) -> &'static [(&'static str, &'static str)] {
    match lang {
        Lang::Rust => &[
            ("Cargo.toml", include_str!("scaffold/rust_Cargo.toml.tmpl")),
            ("src/lib.rs", include_str!("scaffold/rust_lib.rs.tmpl")),
            ("README.md", include_str!("scaffold/rust_README.md.tmpl")),
            (".gitignore", include_str!("scaffold/rust_gitignore.tmpl")),
        ],
        Lang::Python => &[
            ("app.py", include_str!("scaffold/py_app.py.tmpl")),
            ("chat.py", include_str!("scaffold/py_chat.py.tmpl")),
            ("README.md", include_str!("scaffold/py_README.md.tmpl")),
            (".gitignore", include_str!("scaffold/py_gitignore.tmpl")),
        ],
    }
}

/// Checks a runner name: it becomes a directory, a crate name and a file
/// name, so it is a plain lowercase word.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "runner name {name:?}: use lowercase letters, digits, '-' and '_', starting with a \
             letter (at most 64)"
        );
    }
    Ok(())
}

/// Creates the project `name` for `lang` in `parent`; returns its
/// directory. Refuses to touch a directory that already exists.
pub fn create(parent: &Path, name: &str, lang: Lang) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!(
            "{} already exists; pick another name or remove it",
            dir.display()
        );
    }
    let crate_file = name.replace('-', "_");
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{crate}}", &crate_file)
    };
    let mut all: Vec<(&str, String)> = files(lang).iter().map(|(p, t)| (*p, fill(t))).collect();
    all.push(("wit/runner.wit", WIT.to_string()));
    for (path, body) in all {
        let to = dir.join(path);
        if let Some(p) = to.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
        }
        std::fs::write(&to, body).with_context(|| format!("writing {}", to.display()))?;
    }
    Ok(dir)
}

/// What to do next, for the terminal.
pub fn next_steps(dir: &Path, name: &str, lang: Lang) -> String {
    let d = dir.display();
    match lang {
        Lang::Rust => format!(
            "created {d}\n\n  cd {d}\n  cargo build --release --target wasm32-wasip2\n  \
             catpaw-agent check-runner target/wasm32-wasip2/release/{}.wasm\n",
            name.replace('-', "_")
        ),
        Lang::Python => format!(
            "created {d}\n\n  cd {d}\n  pip install componentize-py\n  \
             componentize-py -d wit -w runner componentize app -o {name}.wasm\n  \
             catpaw-agent check-runner {name}.wasm\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_words_and_existing_dirs_are_left_alone() {
        for bad in ["", "Upper", "1st", "a b", "../x", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        check_name("my-runner_2").expect("plain");
        let dir = tempfile::tempdir().expect("tempdir");
        let made = create(dir.path(), "probe", Lang::Python).expect("create");
        assert!(made.join("wit/runner.wit").is_file());
        let app = std::fs::read_to_string(made.join("app.py")).expect("app");
        assert!(
            app.contains("name=\"probe\"") && !app.contains("{{"),
            "{app}"
        );
        let err = create(dir.path(), "probe", Lang::Rust).expect_err("exists");
        assert!(err.to_string().contains("already exists"), "{err}");
    }

    #[test]
    fn each_project_ignores_its_build_output_and_the_state_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (lang, wanted) in [
            (Lang::Rust, &["/target/", "/state.d/"][..]),
            (
                Lang::Python,
                &["*.wasm", "__pycache__/", "*.pyc", "/state.d/"][..],
            ),
        ] {
            let made = create(dir.path(), &format!("p{}", wanted.len()), lang).expect("create");
            let ignored = std::fs::read_to_string(made.join(".gitignore")).expect(".gitignore");
            for w in wanted {
                assert!(ignored.lines().any(|l| l == *w), "{lang:?} {w}: {ignored}");
            }
        }
    }
}

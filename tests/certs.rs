//! `dualstack-webhook certs --out DIR` in a directory others can write: planted symlinks are not
//! written through, an existing CA is refused without `--force`, and keys are private.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Output};

use dualstack_webhook::commands::certs;

const BIN: &str = env!("CARGO_BIN_EXE_dualstack-webhook");

/// The four files `certs` writes.
const FILES: [&str; 4] = ["ca.crt", "ca.key", "tls.crt", "tls.key"];

/// What an outside file planted symlinks point at holds before and, if nothing wrote through
/// them, after the run.
const OUTSIDE: &str = "not a key\n";

fn run_certs(dir: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["certs", "--out"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

#[track_caller]
fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every entry of `dir`: its name, then its mode and, for a symlink, where it points, else its
/// bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, (u32, String)> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            // PEM and the temporary directory's paths are ASCII: lossless, and readable in a diff.
            let content = if meta.file_type().is_symlink() {
                fs::read_link(entry.path()).unwrap().display().to_string()
            } else {
                String::from_utf8_lossy(&fs::read(entry.path()).unwrap()).into_owned()
            };
            let name = entry.file_name().into_string().unwrap();
            (name, (meta.permissions().mode(), content))
        })
        .collect()
}

/// A regular file (not a symlink) holding a PEM private key.
#[track_caller]
fn assert_key_file(path: &Path) {
    let meta = fs::symlink_metadata(path).unwrap();
    assert!(meta.file_type().is_file(), "{}: {meta:?}", path.display());
    let pem = fs::read_to_string(path).unwrap();
    assert!(pem.contains("PRIVATE KEY"), "{}", path.display());
}

/// The permission bits a file created with `mode` gets under this process's umask.
fn created_mode(mode: u32) -> u32 {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o777)
        .open(&probe)
        .unwrap();
    let allowed = fs::metadata(&probe).unwrap().permissions().mode() & 0o777;
    mode & allowed
}

/// The temporary names `certs` once wrote through (`<file>.tmp`), planted as symlinks to a file
/// outside the directory, or to a path outside that does not exist: the outside file keeps its
/// bytes, nothing is created at the dangling target, and the keys land in regular files.
#[test]
fn planted_temporary_symlinks_are_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    fs::write(&target, OUTSIDE).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    let dangling = outside.path().join("created-by-certs");
    for (i, file) in FILES.iter().enumerate() {
        let link = dir.path().join(format!("{file}.tmp"));
        // Half point at the file, half nowhere.
        symlink(if i % 2 == 0 { &dangling } else { &target }, link).unwrap();
    }

    assert_success(&run_certs(dir.path(), &[]));

    assert_eq!(fs::read_to_string(&target).unwrap(), OUTSIDE);
    let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "the outside file's mode changed");
    assert!(!dangling.exists(), "a dangling symlink was followed");
    assert_key_file(&dir.path().join("ca.key"));
    assert_key_file(&dir.path().join("tls.key"));
    for file in FILES {
        let link = dir.path().join(format!("{file}.tmp"));
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
}

/// A second run in the same directory fails with one line naming the directory and `--force`,
/// and leaves every byte and mode there as it was.
#[test]
fn an_existing_ca_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    assert_success(&run_certs(dir.path(), &[]));
    let before = snapshot(dir.path());

    let out = run_certs(dir.path(), &["--dns", "webhook.example"]);

    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "dualstack-webhook: {} already holds a ca (ca.crt, ca.key); pass --force to replace it\n",
            dir.path().display()
        )
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(snapshot(dir.path()), before);
}

/// Half a CA is a CA: a lone `ca.key`, even a dangling symlink, is refused, and left alone.
#[test]
fn a_lone_ca_key_even_a_dangling_symlink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let dangling = outside.path().join("stolen.key");
    symlink(&dangling, dir.path().join("ca.key")).unwrap();
    let before = snapshot(dir.path());

    let out = run_certs(dir.path(), &[]);

    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "dualstack-webhook: {} already holds a ca (ca.key); pass --force to replace it\n",
            dir.path().display()
        )
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(snapshot(dir.path()), before);
    assert!(!dangling.exists());
}

/// `--force` writes a new CA and a new server pair over the old ones.
#[test]
fn force_replaces_the_ca_and_the_server_pair() {
    let dir = tempfile::tempdir().unwrap();
    assert_success(&run_certs(dir.path(), &[]));
    let before = snapshot(dir.path());

    assert_success(&run_certs(dir.path(), &["--force"]));

    let after = snapshot(dir.path());
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        FILES.iter().collect::<Vec<_>>()
    );
    for file in FILES {
        assert_ne!(after[file].1, before[file].1, "{file} was not replaced");
    }
}

/// Keys are 0600 and certificates 0644 (less the umask), set when each file is created; no
/// temporary file is left behind.
#[test]
fn keys_are_0600_and_certificates_0644() {
    let dir = tempfile::tempdir().unwrap();
    assert_success(&run_certs(dir.path(), &[]));

    let files = snapshot(dir.path());
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        FILES.iter().collect::<Vec<_>>()
    );
    for (name, (mode, _)) in files {
        let want = if name.ends_with(".key") {
            0o600
        } else {
            created_mode(0o644)
        };
        assert_eq!(mode & 0o7777, want, "{name}: {mode:o}");
    }
}

/// Without a CA the server pair is replaced, and a `tls.key` (or `tls.crt`) symlink pointing
/// outside is replaced by a file rather than written through.
#[test]
fn a_server_key_symlink_is_replaced_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    fs::write(&target, OUTSIDE).unwrap();
    let dangling = outside.path().join("created-by-certs");
    symlink(&target, dir.path().join("tls.key")).unwrap();
    symlink(&dangling, dir.path().join("tls.crt")).unwrap();

    assert_success(&run_certs(dir.path(), &[]));

    assert_eq!(fs::read_to_string(&target).unwrap(), OUTSIDE);
    assert!(!dangling.exists(), "a dangling symlink was followed");
    assert_key_file(&dir.path().join("tls.key"));
    let mode = fs::metadata(dir.path().join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600);
    let crt = fs::symlink_metadata(dir.path().join("tls.crt")).unwrap();
    assert!(crt.file_type().is_file(), "{crt:?}");
}

/// The library: `generate` refuses with [`certs::Error::CaExists`], `replace` does not, and
/// `ensure_dev` (`serve --dev`) keeps a complete directory.
#[test]
fn library_refuses_replaces_and_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let first = certs::generate(dir.path(), &[], &[]).unwrap();

    let err = certs::generate(dir.path(), &[], &[]).unwrap_err();
    assert!(
        matches!(&err, certs::Error::CaExists { dir: d, files }
            if d == dir.path() && files == &["ca.crt", "ca.key"]),
        "{err:?}"
    );

    let ca = fs::read(&first.ca_cert).unwrap();
    let second = certs::replace(dir.path(), &[], &[]).unwrap();
    assert_eq!(second, first);
    let new_ca = fs::read(&second.ca_cert).unwrap();
    assert_ne!(new_ca, ca);

    assert_eq!(certs::ensure_dev(dir.path()).unwrap(), second);
    assert_eq!(fs::read(&second.ca_cert).unwrap(), new_ca);
}

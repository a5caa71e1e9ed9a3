//! The container image's promise: the binary needs only the shared libraries that the
//! `Dockerfile`'s runtime base, distroless/cc-debian12, ships (glibc and libgcc), and the build it
//! holds is the one the tests and benchmarks run.

use std::process::Command;

/// The runtime base whose libraries [`IMAGE_LIBRARIES`] lists.
const RUNTIME_BASE: &str = "FROM gcr.io/distroless/cc-debian12:nonroot";

/// What distroless/cc-debian12 provides that a Rust binary links against: glibc's libraries (its
/// dynamic loader too, which glibc's thread-local storage asks for by name) and libgcc's unwinder.
const IMAGE_LIBRARIES: [&str; 5] = [
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
];

#[test]
fn the_binary_links_only_what_the_runtime_image_ships() {
    // binutils' objdump (tests/install-deps.sh installs it where it is missing).
    let output = Command::new("objdump")
        .arg("-p")
        .arg(env!("CARGO_BIN_EXE_dualstack-webhook"))
        .output()
        .expect("run objdump");
    assert!(output.status.success(), "{output:?}");
    let headers = String::from_utf8(output.stdout).expect("objdump prints text");
    let needed: Vec<&str> = headers
        .lines()
        .filter_map(|line| line.trim().strip_prefix("NEEDED"))
        .map(str::trim)
        .collect();
    assert!(needed.contains(&"libc.so.6"), "{headers}");
    let missing: Vec<&str> = needed
        .into_iter()
        .filter(|library| !IMAGE_LIBRARIES.contains(library))
        .collect();
    assert!(
        missing.is_empty(),
        "the image does not ship {missing:?}: change the Dockerfile's runtime base, or the dependency"
    );
}

#[test]
fn the_image_holds_the_build_the_tests_and_benchmarks_run() {
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("read the Dockerfile");
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|line| line.starts_with("FROM "))
        .collect();
    assert_eq!(stages.last(), Some(&RUNTIME_BASE), "{stages:?}");
    // The host target's release build (`target/release`), as `make bench` and the e2e harness
    // build it: no `--target` of its own, so no other libc.
    assert!(
        dockerfile.contains("cp target/release/dualstack-webhook /dualstack-webhook"),
        "{dockerfile}"
    );
    assert!(!dockerfile.contains("--target"), "{dockerfile}");
}

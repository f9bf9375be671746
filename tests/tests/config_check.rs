//! `--check` (contract): 0 for a valid config, 78 for an invalid one with the
//! file, the line and the key in the message. The shipped examples must pass.
//! `chorusctl keygen` makes a key file `--check` accepts, and `--check`
//! refuses a key file others may read.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chorus_tests::bins::{bins, workspace_root};
use chorus_tests::keys::{cluster_key_file, key_id};
use chorus_tests::testenv::TestEnv;

/// Runs `<binary> --check --config <path>`; returns (exit code, stderr).
fn check(env: &TestEnv, binary: &Path, label: &str, config: &Path) -> (i32, String) {
    let mut cmd = std::process::Command::new(binary);
    cmd.arg("--check").arg("--config").arg(config);
    let child = env.spawn_simple(label, cmd).unwrap();
    let status = child.wait_timeout(Duration::from_secs(30)).unwrap();
    let stderr = std::fs::read_to_string(child.log_path()).unwrap();
    let code = status
        .code()
        .unwrap_or_else(|| panic!("{label} killed by a signal: {status}"));
    (code, stderr)
}

const DIRECTORY_OK: &str = "\
listen = \"127.0.0.1:7400\"
lease_ms = 1500
log_level = \"info\"
key_file = \"cluster.key\"

[[group]]
name = \"chat\"
address = \"239.192.0.10\"
port = 7410
";

const CHORUSD_OK: &str = "\
node = \"n1\"
directory = [\"127.0.0.1:7400\"]
interface = \"127.0.0.1\"
data_port = 7401
socket = \"/tmp/chorus-check-test.sock\"
socket_mode = \"0660\"
log_level = \"info\"
key_file = \"cluster.key\"
";

/// Asserts exit 78 and a message naming the file, the key and `:line:`.
fn assert_rejected(env: &TestEnv, binary: &Path, file: &str, text: &str, key: &str, line: usize) {
    let path = env.write_file(file, text).unwrap();
    let (code, stderr) = check(env, binary, file, &path);
    assert_eq!(code, 78, "{file}: expected exit 78, stderr: {stderr}");
    assert!(
        stderr.contains(key),
        "{file}: stderr does not name {key:?}: {stderr}"
    );
    assert!(
        stderr.contains(&format!(":{line}:")),
        "{file}: stderr lacks \":{line}:\": {stderr}"
    );
    assert!(
        stderr.contains(file),
        "{file}: stderr does not name the file: {stderr}"
    );
}

#[test]
fn shipped_examples_are_valid() {
    let env = TestEnv::new("config_examples", Duration::from_secs(120)).unwrap();
    let (code, err) = check(
        &env,
        &bins().directory,
        "dir-example",
        &keyed_example(&env, "directory.toml"),
    );
    assert_eq!(code, 0, "directory.toml example: {err}");
    let (code, err) = check(
        &env,
        &bins().directory,
        "replicated-example",
        &keyed_example(&env, "directory-replicated.toml"),
    );
    assert_eq!(code, 0, "directory-replicated.toml example: {err}");
    let (code, err) = check(
        &env,
        &bins().chorusd,
        "chorusd-example",
        &keyed_example(&env, "chorusd.toml"),
    );
    assert_eq!(code, 0, "chorusd.toml example: {err}");
}

/// The shipped example `name`, copied into the test's directory with its
/// `key_file` (/etc/chorus/cluster.key, absent here) pointed at the test's
/// key; every other line as shipped.
fn keyed_example(env: &TestEnv, name: &str) -> PathBuf {
    let text =
        std::fs::read_to_string(workspace_root().join("config/examples").join(name)).unwrap();
    let line = "key_file = \"/etc/chorus/cluster.key\"";
    assert!(
        text.contains(line),
        "{name} names no /etc/chorus/cluster.key"
    );
    let key = cluster_key_file(env.dir()).unwrap();
    let text = text.replace(line, &format!("key_file = \"{}\"", key.display()));
    env.write_file(&format!("example-{name}"), &text).unwrap()
}

#[test]
fn directory_check_rejects_bad_files() {
    let env = TestEnv::new("config_check_directory", Duration::from_secs(120)).unwrap();
    let bin = &bins().directory;
    // The base file is valid, so each rejection below is the bad line's doing.
    cluster_key_file(env.dir()).unwrap();
    let ok = env.write_file("dir-ok.toml", DIRECTORY_OK).unwrap();
    assert_eq!(check(&env, bin, "dir-ok", &ok).0, 0);

    let unknown_top = DIRECTORY_OK.replace(
        "log_level = \"info\"\n",
        "log_level = \"info\"\nbogus_key = 1\n",
    );
    assert_rejected(&env, bin, "dir-unknown.toml", &unknown_top, "bogus_key", 4);

    let unknown_in_group = format!("{DIRECTORY_OK}colour = \"red\"\n");
    assert_rejected(
        &env,
        bin,
        "dir-unknown-group.toml",
        &unknown_in_group,
        "colour",
        10,
    );

    let unicast = DIRECTORY_OK.replace("239.192.0.10", "10.1.2.3");
    assert_rejected(&env, bin, "dir-unicast.toml", &unicast, "address", 8);

    let keyless = DIRECTORY_OK.replace("key_file = \"cluster.key\"\n", "");
    let path = env.write_file("dir-keyless.toml", &keyless).unwrap();
    let (code, stderr) = check(&env, bin, "dir-keyless", &path);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("no cluster key: make one with `chorusctl keygen"),
        "{stderr}"
    );
    let insecure = keyless.replace(
        "log_level = \"info\"\n",
        "log_level = \"info\"\ninsecure = true\n",
    );
    let path = env.write_file("dir-insecure.toml", &insecure).unwrap();
    assert_eq!(check(&env, bin, "dir-insecure", &path).0, 0);
}

#[test]
fn chorusd_check_rejects_bad_files() {
    let env = TestEnv::new("config_check_chorusd", Duration::from_secs(120)).unwrap();
    let bin = &bins().chorusd;
    cluster_key_file(env.dir()).unwrap();
    let ok = env.write_file("d-ok.toml", CHORUSD_OK).unwrap();
    assert_eq!(check(&env, bin, "d-ok", &ok).0, 0);

    let unknown = format!("{CHORUSD_OK}sokcet_mode = \"0600\"\n");
    assert_rejected(&env, bin, "d-unknown.toml", &unknown, "sokcet_mode", 9);

    let both = format!("{CHORUSD_OK}insecure = true\n");
    assert_rejected(&env, bin, "d-both.toml", &both, "insecure", 9);
    let missing = CHORUSD_OK.replace("cluster.key", "missing.key");
    assert_rejected(&env, bin, "d-missing.toml", &missing, "key_file", 8);
}

/// Runs `chorusctl keygen ARGS`; returns (exit code, stdout, stderr).
fn keygen(args: &[&str], path: &Path) -> (i32, String, String) {
    let out = Command::new(&bins().chorusctl)
        .arg("keygen")
        .args(args)
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn keygen_makes_a_key_check_accepts_and_keeps_it_unless_forced() {
    let env = TestEnv::new("config_keygen", Duration::from_secs(120)).unwrap();
    let key = env.path("made.key");
    let (code, stdout, stderr) = keygen(&[], &key);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(mode_of(&key), 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    let id = key_id(&key).unwrap();
    // The id and the next steps are printed; the secret is not.
    assert!(stdout.contains(&format!("cluster key {id}")), "{stdout}");
    assert!(stdout.contains("key_file = "), "{stdout}");
    let hex = text.trim().rsplit(':').next().unwrap();
    assert!(
        !stdout.contains(hex) && !stderr.contains(hex),
        "the secret was printed"
    );

    // chorusd --check takes a file that names it.
    let config = CHORUSD_OK.replace("cluster.key", "made.key");
    let config = env.write_file("keygen.toml", &config).unwrap();
    let (code, err) = check(&env, &bins().chorusd, "keygen-check", &config);
    assert_eq!(code, 0, "{err}");

    // An existing key is left alone...
    let (code, _, stderr) = keygen(&[], &key);
    assert_eq!(code, 73, "{stderr}");
    assert!(
        stderr.contains("exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), text);
    // ...unless forced: a new key, still 0600, and no temporary file left.
    let (code, stdout, stderr) = keygen(&["--force"], &key);
    assert_eq!(code, 0, "{stderr}");
    let new_id = key_id(&key).unwrap();
    assert_ne!(new_id, id);
    assert!(
        stdout.contains(&format!("cluster key {new_id}")),
        "{stdout}"
    );
    assert_eq!(mode_of(&key), 0o600);
    let strays: Vec<_> = std::fs::read_dir(env.dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".made.key"))
        .collect();
    assert!(strays.is_empty(), "left behind: {strays:?}");
    assert_eq!(check(&env, &bins().chorusd, "keygen-forced", &config).0, 0);

    // A key others may read is refused, naming its mode, by both binaries.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, err) = check(&env, &bins().chorusd, "keygen-644", &config);
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("key `key_file`") && err.contains("mode 644"),
        "{err}"
    );
    assert!(err.contains("chmod 600"), "{err}");
    let dir_config = DIRECTORY_OK.replace("cluster.key", "made.key");
    let dir_config = env.write_file("keygen-dir.toml", &dir_config).unwrap();
    let (code, err) = check(&env, &bins().directory, "keygen-dir-644", &dir_config);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("mode 644"), "{err}");
}

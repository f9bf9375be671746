//! The `chorus-directory` binary: --check, exit codes, readiness, signals,
//! and a restart under running groups.

mod common;

use chorus_proto::wire::directory::{FromDirectory, ToDirectory, DIRECTORY_FRAME_MAX_BYTES};
use chorus_proto::wire::frame::{write_frame, FrameBuffer};
use chorus_proto::Incarnation;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_chorus-directory");
const WAIT: Duration = Duration::from_secs(10);

/// A valid file. It says port 7400; tests that serve pass
/// `--listen 127.0.0.1:0` (a file may not name port 0) so that parallel runs
/// never collide. Insecure: these tests speak the directory's protocol
/// themselves, and are about the binary, not the key.
const VALID: &str = r#"
listen = "127.0.0.1:7400"
lease_ms = 60000
log_level = "info"
insecure = true

[[group]]
name = "chat"
address = "239.192.0.10"
port = 7410
"#;

/// A scratch directory unique to this test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chorus-directory-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write config");
}

#[test]
fn check_accepts_a_valid_file() {
    let dir = scratch("check-ok");
    let file = dir.join("directory.toml");
    write(&file, VALID);
    let out = Command::new(BIN)
        .arg("--check")
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ok: {}", file.display())
    );
}

#[test]
fn check_rejects_an_invalid_file_with_78_and_the_line() {
    let dir = scratch("check-bad");
    let file = dir.join("directory.toml");
    write(&file, &format!("{VALID}\nbogus = 1\n"));
    let out = Command::new(BIN)
        .arg("--check")
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(err.contains("bogus"), "{err}");
    // Without --check an invalid file is the same configuration error.
    let out = Command::new(BIN)
        .arg("--config")
        .arg(dir.join("missing.toml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
}

/// `--check`, then a start, on `file`: both exit 78 with `words` on stderr.
fn assert_config_error(file: &Path, words: &str) {
    for check in [true, false] {
        let mut cmd = Command::new(BIN);
        if check {
            cmd.arg("--check");
        }
        let out = cmd
            .arg("--config")
            .arg(file)
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "check {check}: {err}");
        assert!(err.contains(words), "check {check}: lacks {words:?}: {err}");
    }
}

#[test]
fn a_file_without_a_key_or_with_a_bad_one_exits_78() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("keys");
    let file = dir.join("directory.toml");
    write(&file, &VALID.replace("insecure = true\n", ""));
    assert_config_error(&file, "no cluster key: make one with `chorusctl keygen");

    let key = dir.join("cluster.key");
    write(
        &key,
        &chorus_proto::wire::seal::ClusterKey::text_of(&[3; 32]),
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    write(
        &file,
        &VALID.replace("insecure = true", "key_file = \"cluster.key\""),
    );
    assert_config_error(&file, "has mode 644");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // A start names the key it seals with by its id, never the key.
    let id = chorus_proto::wire::seal::ClusterKey::from_bytes(&[3; 32]).id();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let lines = stderr_lines(&mut child);
    wait_line(&lines, &format!("sealing with cluster key {id}"));
    signal(&child, "-TERM");
    assert_eq!(child.wait().expect("wait").code(), Some(0));
    let out = Command::new(BIN)
        .args(["--check", "--config"])
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn help_and_version_exit_0_and_bad_usage_exits_2() {
    for flag in ["--help", "--version"] {
        let out = Command::new(BIN).arg(flag).output().expect("run");
        assert_eq!(out.status.code(), Some(0), "{flag}");
    }
    let out = Command::new(BIN)
        .arg("--no-such-flag")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_listen_address_in_use_exits_1() {
    let dir = scratch("in-use");
    let file = dir.join("directory.toml");
    write(&file, VALID);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .arg("--listen")
        .arg(addr.to_string())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}

/// Forwards the child's stderr lines to a channel.
fn stderr_lines(child: &mut Child) -> Receiver<String> {
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a stderr line containing `needle` and returns it.
fn wait_line(lines: &Receiver<String>, needle: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no line with `{needle}`"));
        if line.contains(needle) {
            return line;
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(sig)
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(ok.success());
}

/// Asks for the group list over a fresh link and returns the names.
fn group_names(addr: SocketAddr, node: &str) -> Vec<String> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut out = Vec::new();
    let hello = ToDirectory::Hello {
        name: node.into(),
        incarnation: Incarnation(1),
        ip: Ipv4Addr::LOCALHOST,
        data_port: 1,
        order_port: 2,
        previous: None,
        epoch: chorus_proto::Epoch(0),
    };
    write_frame(&mut out, |b| hello.encode(b));
    write_frame(&mut out, |b| {
        ToDirectory::ListGroups { request: 1 }.encode(b)
    });
    s.write_all(&out).expect("send");
    let mut frames = FrameBuffer::new(DIRECTORY_FRAME_MAX_BYTES);
    // A directory in its grace period answers the list before the Welcome.
    loop {
        if let Some(body) = frames.next_frame().expect("frame") {
            match FromDirectory::decode(body).expect("decode") {
                FromDirectory::Groups { groups, .. } => {
                    return groups.iter().map(|g| g.name.clone()).collect()
                }
                FromDirectory::Welcome { .. } => continue,
                other => panic!("expected Welcome or Groups, got {other:?}"),
            }
        }
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "closed early");
        frames.extend(&buf[..n]);
    }
}

#[test]
fn serves_notifies_reloads_on_sighup_and_stops_on_sigterm() {
    let dir = scratch("serve");
    let file = dir.join("directory.toml");
    write(&file, VALID);
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    notify.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .args(["--listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &notify_path)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let lines = stderr_lines(&mut child);
    let mut buf = [0u8; 64];
    let n = notify.recv(&mut buf).expect("READY=1");
    assert_eq!(&buf[..n], b"READY=1");
    wait_line(
        &lines,
        "running without a cluster key (insecure = true): anyone who can reach",
    );
    let line = wait_line(&lines, "listening on ");
    let addr: SocketAddr = line
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("address in log");
    assert_eq!(group_names(addr, "n1"), vec!["chat"]);

    // A valid new file: the added group appears.
    write(
        &file,
        &format!("{VALID}\n[[group]]\nname = \"news\"\naddress = \"239.192.0.11\"\nport = 7410\n"),
    );
    signal(&child, "-HUP");
    wait_line(&lines, "reloaded");
    assert_eq!(group_names(addr, "n2"), vec!["chat", "news"]);

    // A broken file: rejected whole, the running configuration stays.
    write(&file, "listen = \n");
    signal(&child, "-HUP");
    wait_line(&lines, "running configuration stays");
    assert_eq!(group_names(addr, "n3"), vec!["chat", "news"]);

    signal(&child, "-TERM");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
}

/// Starts the binary on `listen` with `file` and returns it, its stderr
/// lines and the address it listens on.
fn serve(file: &Path, listen: &str) -> (Child, Receiver<String>, SocketAddr) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(file)
        .args(["--listen", listen])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let lines = stderr_lines(&mut child);
    let line = wait_line(&lines, "listening on ");
    let addr = line
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("address in log");
    (child, lines, addr)
}

#[test]
fn a_restarted_binary_takes_back_the_groups_its_daemons_report() {
    let dir = scratch("restart");
    let file = dir.join("directory.toml");
    write(&file, &VALID.replace("lease_ms = 60000", "lease_ms = 400"));
    let (first, _lines, addr) = serve(&file, "127.0.0.1:0");
    let mut a = common::FakeDaemon::connect(addr, "a", 7);
    let node = a.hello(None);
    a.join("chat", 1, "x");
    let before = a.view();
    signal(&first, "-TERM");
    let mut first = first;
    assert_eq!(first.wait().expect("wait").code(), Some(0));
    a.expect_closed();

    // The same address again: the daemon comes back under its id.
    let (mut second, lines, again) = serve(&file, &addr.to_string());
    assert_eq!(again, addr);
    let mut a = common::FakeDaemon::connect(addr, "a", 7);
    assert_eq!(a.hello(node), node);
    a.resume(&before, vec![(chorus_proto::MemberId(1), "x".into())]);
    let after = a.view();
    assert_eq!((after.group, after.members), (before.group, before.members));
    assert_eq!(after.view.0, before.view.0 + 1);
    wait_line(&lines, "recovered");
    signal(&second, "-TERM");
    assert_eq!(second.wait().expect("wait").code(), Some(0));
}

//! Starting the directory and daemons, wherever they run.
//!
//! A [`Launcher`] says where a process runs (this host, or inside a network
//! namespace through `ip netns exec`); everything else — config files,
//! readiness through `NOTIFY_SOCKET`, logs — is the same for both the
//! loopback and the namespace clusters.

use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::bins::bins;
use crate::configs::{DaemonConfig, DirectoryConfig};
use crate::error::Result;
use crate::notify::NotifySocket;
use crate::process::ChildGuard;
use crate::testenv::TestEnv;

/// How long a directory or daemon may take to send `READY=1`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a directory or daemon may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a process runs.
#[derive(Debug, Clone)]
pub enum Launcher {
    /// Directly on this host.
    Host,
    /// Inside a network namespace (`ip netns exec NS ...`; `ip` execs the
    /// program, so the child's pid is the program's own).
    Netns {
        /// Path of the `ip` tool.
        ip: PathBuf,
        /// Namespace name.
        ns: String,
    },
}

impl Launcher {
    /// A command that runs `program` in this place.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        match self {
            Launcher::Host => Command::new(program),
            Launcher::Netns { ip, ns } => {
                let mut cmd = Command::new(ip);
                cmd.arg("netns").arg("exec").arg(ns).arg(program);
                cmd
            }
        }
    }
}

/// A running `chorus-directory`.
#[derive(Debug)]
pub struct DirectoryProc {
    /// Its TCP address.
    pub listen: SocketAddrV4,
    /// Its config file.
    pub config_path: PathBuf,
    /// Names its files in the test directory (`NAME.toml`, `NAME.notify`,
    /// `NAME.log`), so that a test can run more than one directory.
    name: String,
    guard: ChildGuard,
}

impl DirectoryProc {
    /// Writes `config`, starts the directory and waits for `READY=1`.
    /// Its files are `directory.*`.
    pub fn start(env: &TestEnv, launcher: &Launcher, config: &DirectoryConfig) -> Result<Self> {
        DirectoryProc::start_named(env, launcher, config, "directory")
    }

    /// As [`DirectoryProc::start`], with files `NAME.toml`, `NAME.notify`
    /// and `NAME.log`: a second directory (a standby) needs its own.
    pub fn start_named(
        env: &TestEnv,
        launcher: &Launcher,
        config: &DirectoryConfig,
        name: &str,
    ) -> Result<Self> {
        let config_path = env.write_file(&format!("{name}.toml"), &config.to_toml())?;
        let guard = DirectoryProc::launch(env, launcher, &config_path, name, name)?;
        Ok(DirectoryProc {
            listen: config.listen,
            config_path,
            name: name.to_owned(),
            guard,
        })
    }

    /// Starts the directory on `config_path` with `label` naming its log
    /// files, and waits for `READY=1` on `NAME.notify`.
    fn launch(
        env: &TestEnv,
        launcher: &Launcher,
        config_path: &Path,
        name: &str,
        label: &str,
    ) -> Result<ChildGuard> {
        let notify = NotifySocket::bind(&env.path(&format!("{name}.notify")))?;
        let mut cmd = launcher.command(&bins().directory);
        cmd.arg("--config").arg(config_path);
        cmd.env("NOTIFY_SOCKET", notify.path());
        let guard = env.spawn_simple(label, cmd)?;
        notify.wait_ready(&guard, READY_TIMEOUT)?;
        Ok(guard)
    }

    /// The process.
    pub fn process(&self) -> &ChildGuard {
        &self.guard
    }

    /// `kill -9` the directory, then start it again on the same address and
    /// config (its state is soft: the daemons re-register and resume), and
    /// wait for `READY=1`. `life` names the new process's log files.
    pub fn kill_and_restart(
        &mut self,
        env: &TestEnv,
        launcher: &Launcher,
        life: u32,
    ) -> Result<()> {
        self.guard.kill();
        let label = format!("{}-{life}", self.name);
        self.guard = DirectoryProc::launch(env, launcher, &self.config_path, &self.name, &label)?;
        Ok(())
    }

    /// Stops the directory with SIGTERM (as `systemctl restart` does),
    /// then starts it again on its config file, read anew (a test may have
    /// changed it), and waits for `READY=1`. `life` names the new
    /// process's log files.
    pub fn restart(&mut self, env: &TestEnv, launcher: &Launcher, life: u32) -> Result<()> {
        self.guard.terminate(STOP_TIMEOUT)?;
        let label = format!("{}-{life}", self.name);
        self.guard = DirectoryProc::launch(env, launcher, &self.config_path, &self.name, &label)?;
        Ok(())
    }
}

/// A running `chorusd`, and how to reach it.
#[derive(Debug)]
pub struct Node {
    /// Node name (`n1`, `n2`, ...).
    pub name: String,
    /// The Unix socket it serves applications on.
    pub socket: PathBuf,
    /// Its interface address.
    pub interface: Ipv4Addr,
    /// Where it (and its chorusctl) runs.
    pub launcher: Launcher,
    /// Its config file.
    pub config_path: PathBuf,
    guard: ChildGuard,
}

impl Node {
    /// Writes `config`, starts chorusd and waits for `READY=1`.
    pub fn start(env: &TestEnv, launcher: &Launcher, config: &DaemonConfig) -> Result<Node> {
        Node::launch(env, launcher, config, true)
    }

    /// Writes `config` and starts chorusd without waiting for anything (no
    /// `NOTIFY_SOCKET`): a test of how it behaves while it starts, or of
    /// the readiness a script sees, waits as it sees fit.
    pub fn spawn(env: &TestEnv, launcher: &Launcher, config: &DaemonConfig) -> Result<Node> {
        Node::launch(env, launcher, config, false)
    }

    fn launch(
        env: &TestEnv,
        launcher: &Launcher,
        config: &DaemonConfig,
        wait_ready: bool,
    ) -> Result<Node> {
        let label = format!("chorusd-{}", config.node);
        let config_path = env.write_file(&format!("{label}.toml"), &config.to_toml())?;
        let guard = Node::run(env, launcher, &config_path, &label, wait_ready)?;
        Ok(Node {
            name: config.node.clone(),
            socket: config.socket.clone(),
            interface: config.interface,
            launcher: launcher.clone(),
            config_path,
            guard,
        })
    }

    /// Starts chorusd on `config_path`, its log files named `label`, and
    /// waits for `READY=1` if `wait_ready`.
    fn run(
        env: &TestEnv,
        launcher: &Launcher,
        config_path: &Path,
        label: &str,
        wait_ready: bool,
    ) -> Result<ChildGuard> {
        let mut cmd = launcher.command(&bins().chorusd);
        cmd.arg("--config").arg(config_path);
        if wait_ready {
            let notify = NotifySocket::bind(&env.path(&format!("{label}.notify")))?;
            cmd.env("NOTIFY_SOCKET", notify.path());
            let guard = env.spawn_simple(label, cmd)?;
            notify.wait_ready(&guard, READY_TIMEOUT)?;
            Ok(guard)
        } else {
            cmd.env_remove("NOTIFY_SOCKET");
            env.spawn_simple(label, cmd)
        }
    }

    /// Stops the daemon with SIGTERM (as `systemctl restart` does), then
    /// starts it again on its config file, read anew (a test may have
    /// changed it), and waits for `READY=1`. `life` names the new
    /// process's log files (`chorusd-NODE-LIFE`).
    pub fn restart(&mut self, env: &TestEnv, life: u32) -> Result<()> {
        self.guard.terminate(STOP_TIMEOUT)?;
        let label = format!("chorusd-{}-{life}", self.name);
        self.guard = Node::run(env, &self.launcher, &self.config_path, &label, true)?;
        Ok(())
    }

    /// A `chorusctl --socket <this node's socket>` command, run where the node runs.
    pub fn chorusctl(&self) -> Command {
        let mut cmd = self.launcher.command(&bins().chorusctl);
        cmd.arg("--socket").arg(&self.socket);
        cmd
    }

    /// The daemon process.
    pub fn process(&self) -> &ChildGuard {
        &self.guard
    }

    /// The member name an application `name` gets on this node (`NODE:NAME`).
    pub fn member(&self, name: &str) -> String {
        format!("{}:{name}", self.name)
    }

    /// The socket path, for `CHORUS_SOCKET`.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }
}

//! chorus-tests: the harness for chorus's end-to-end tests.
//!
//! The tests drive the real binaries only through their contract
//! (`/work/shared/design/contract.md`): command-line flags, config files and
//! `chorusctl --json` output. Pieces, by concern:
//! - [`bins`]: build (once, same profile as the test) and locate the binaries;
//! - [`testenv`], [`process`], [`notify`]: a per-test directory, processes that
//!   die with their test, readiness through `NOTIFY_SOCKET`, a watchdog;
//! - [`alloc`], [`configs`], [`keys`]: ports, multicast groups, config files
//!   and the key file every test cluster runs with;
//! - [`cluster`], [`loopback`], [`netns`], [`netns_cluster`]: a directory and N
//!   daemons on 127.0.0.1, or one per network-namespace host with nftables loss;
//! - [`dev`]: `chorusd --dev` and the socket path it prints;
//! - [`listener`], [`client`]: `chorusctl listen --json` parsed into events
//!   with waits on conditions, `chorusctl send`/`members`;
//! - [`check`]: the delivery-guarantee checkers;
//! - [`scenario`]: workloads shared by several tests;
//! - [`stats`]: every daemon's data-path counters, summed, and a sampler of
//!   the flow windows during a run;
//! - [`bench`]: the `chorus-bench` cluster benchmark.
//!
//! A failing test keeps its directory and prints the tail of every log;
//! `CHORUS_TESTS_KEEP=1` keeps it for passing tests too.
#![forbid(unsafe_code)]
// Unit tests may unwrap; the library itself is still checked in the non-test build.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod alloc;
pub mod bench;
pub mod bins;
pub mod check;
pub mod client;
pub mod cluster;
pub mod configs;
pub mod dev;
pub mod error;
pub mod failover;
pub mod keys;
pub mod listener;
pub mod loopback;
pub mod netns;
pub mod netns_cluster;
pub mod notify;
pub mod process;
pub mod replicated;
pub mod scenario;
pub mod stats;
pub mod testenv;
pub mod wiretap;

pub use error::{HarnessError, Result};

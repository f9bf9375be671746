//! `chorusctl keygen PATH`: a new cluster key, written where only its owner
//! can read it.
//!
//! The secret goes to the file and nowhere else: what is printed is the
//! key's id (derived from the key, it names it without revealing it) and
//! what to do next.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chorus_proto::wire::seal::{ClusterKey, KEY_BYTES};
use ring::rand::{SecureRandom, SystemRandom};

/// sysexits `EX_CANTCREAT`: the key file cannot be created (it exists, or
/// its directory cannot be written).
pub const EXIT_CANTCREAT: u8 = 73;
/// sysexits `EX_OSERR`: the system's random source failed.
pub const EXIT_OSERR: u8 = 71;

/// Why no key was written, and the exit code that says so.
#[derive(Debug)]
pub struct KeygenError {
    pub message: String,
    pub code: u8,
}

/// Makes the key and writes it to `path`: a new file, or with `force` a
/// replacement put in place by one rename, so the path never holds a
/// partial key nor, even for a moment, one others may read.
pub fn keygen(path: &Path, force: bool) -> Result<(), KeygenError> {
    let mut secret = [0u8; KEY_BYTES];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| KeygenError {
            message: "the system's random source failed; no key was written".to_owned(),
            code: EXIT_OSERR,
        })?;
    let text = ClusterKey::text_of(&secret);
    let id = ClusterKey::from_bytes(&secret).id();
    let replaced = if force {
        replace(path, &text)?;
        true
    } else {
        create(path, &text)?;
        false
    };
    let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let shown = shown.display();
    let mut out = io::stdout().lock();
    let _ = writeln!(
        out,
        "{} cluster key {id} in {shown} (mode 0600)",
        if replaced {
            "replaced it with"
        } else {
            "wrote"
        }
    );
    let _ = writeln!(
        out,
        "next:\n\
         \x20 1. give it to the user chorusd and chorus-directory run as (keep mode 0600):\n\
         \x20      chown chorus:chorus {shown}\n\
         \x20 2. copy it, with that owner and mode, to every host that runs chorusd and to\n\
         \x20    every directory replica: the same key everywhere.\n\
         \x20 3. name it in chorusd.toml and directory.toml:\n\
         \x20      key_file = \"{shown}\"\n\
         \x20 4. check each file with `chorusd --check` / `chorus-directory --check`, then restart.\n\
         \x20 To change the key of a running cluster without stopping it, roll the new key out\n\
         \x20 with accept_key_files first (\"Rotating the cluster key\" in systemd/INSTALL.md)."
    );
    if replaced {
        let _ = writeln!(
            out,
            "The key that was in {shown} is gone: a process still using it no longer belongs to the cluster once it restarts with this one."
        );
    }
    let _ = out.flush();
    Ok(())
}

/// A new file, refused if `path` exists: it may be the key a running
/// cluster uses, and a lost key locks every process out at its restart.
fn create(path: &Path, text: &str) -> Result<(), KeygenError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => KeygenError {
                message: format!(
                    "{} exists; it may be the key the cluster runs with, so it is left alone. \
                     Choose another path, or pass --force to replace it (every process using \
                     the old key must then get the new one)",
                    path.display()
                ),
                code: EXIT_CANTCREAT,
            },
            _ => cannot_create(path, &e),
        })?;
    fill(file, path, text).inspect_err(|_| {
        // A file we created and could not fill is no key: leave none.
        let _ = std::fs::remove_file(path);
    })
}

/// Writes a temporary file beside `path`, then renames it over `path`.
fn replace(path: &Path, text: &str) -> Result<(), KeygenError> {
    let name = path
        .file_name()
        .ok_or_else(|| KeygenError {
            message: format!("{} names no file", path.display()),
            code: EXIT_CANTCREAT,
        })?
        .to_string_lossy()
        .into_owned();
    let temp: PathBuf = path.with_file_name(format!(".{name}.keygen-{}", std::process::id()));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|e| cannot_create(&temp, &e))?;
    let done = fill(file, &temp, text).and_then(|()| {
        std::fs::rename(&temp, path).map_err(|e| KeygenError {
            message: format!("cannot put the new key in place of {}: {e}", path.display()),
            code: EXIT_CANTCREAT,
        })
    });
    if done.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    done
}

/// Sets mode 0600 exactly (the umask may have taken bits from the create
/// mode, never added any; this also makes it owner-writable for --force
/// later), writes the key and syncs it to disk before it is relied on.
fn fill(mut file: File, path: &Path, text: &str) -> Result<(), KeygenError> {
    let write = |e: io::Error| KeygenError {
        message: format!("cannot write {}: {e}", path.display()),
        code: EXIT_CANTCREAT,
    };
    file.set_permissions(Permissions::from_mode(0o600))
        .map_err(write)?;
    file.write_all(text.as_bytes()).map_err(write)?;
    file.sync_all().map_err(write)
}

fn cannot_create(path: &Path, e: &io::Error) -> KeygenError {
    KeygenError {
        message: format!("cannot create {}: {e}", path.display()),
        code: EXIT_CANTCREAT,
    }
}

//! systemd readiness (sd_notify) without libsystemd: one datagram to
//! $NOTIFY_SOCKET.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. "READY=1") if chorusd runs under a notify-aware
/// supervisor. Failures are logged, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            log::warn!("sd_notify: {e}");
            return;
        }
    };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(name) = bytes.strip_prefix(b"@") {
        abstract_send(&sock, name, state)
    } else {
        sock.send_to(state.as_bytes(), &path).map(|_| ())
    };
    if let Err(e) = result {
        log::warn!("sd_notify to {path:?}: {e}");
    }
}

fn abstract_send(sock: &UnixDatagram, name: &[u8], state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sock.send_to_addr(state.as_bytes(), &addr).map(|_| ())
}

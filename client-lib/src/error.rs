//! What can go wrong talking to the daemon.

use std::io;
use std::path::PathBuf;

use chorus_proto::wire::app::ErrorCode;
use chorus_proto::wire::DecodeError;

/// An error from a [`crate::Client`] call.
///
/// [`Error::Daemon`] and [`Error::Invalid`] leave the session usable. After
/// [`Error::Io`], [`Error::Protocol`] or [`Error::Closed`] the session is
/// over: every later call returns [`Error::Closed`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The daemon's socket could not be reached (no daemon, wrong path, no
    /// permission).
    #[error("cannot connect to chorusd at {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("chorusd socket: {0}")]
    Io(#[from] io::Error),
    /// The daemon sent something this library does not understand.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The daemon refused a request (possibly an earlier, pipelined send).
    #[error("chorusd refused ({code:?}): {message}")]
    Daemon { code: ErrorCode, message: String },
    /// The arguments cannot be sent (a name over 255 bytes, a payload over
    /// the frame limit). Nothing was sent.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The daemon closed the connection, or an earlier I/O or protocol
    /// error ended the session.
    #[error("the connection to chorusd is closed")]
    Closed,
}

/// How the daemon broke the protocol.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A frame that does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A well-formed frame that makes no sense here (e.g. a reply to a
    /// request never made).
    #[error("{0}")]
    Unexpected(String),
}

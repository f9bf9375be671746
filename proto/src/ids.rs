//! Newtype identifiers. Each one names what it counts so that a sender
//! sequence number can never be passed where a global sequence number is meant.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// A daemon, numbered by the directory when it registers (never 0).
    NodeId(u32)
);
id_type!(
    /// One life of a daemon: chosen by the daemon at start (the edge draws it
    /// from the clock and randomness), so state from an earlier life is never
    /// confused with the current one.
    Incarnation(u64)
);
id_type!(
    /// A group, numbered by the directory (never 0).
    GroupId(u32)
);
id_type!(
    /// A view of a group, increasing with every membership change.
    ViewId(u64)
);
id_type!(
    /// A position in one sender's stream for one group (first message: 1).
    SenderSeq(u64)
);
id_type!(
    /// A position in a group's total order (first message: 1).
    GlobalSeq(u64)
);
id_type!(
    /// A local application member on a daemon, unique within the daemon's life.
    MemberId(u32)
);
id_type!(
    /// Identifies a deployment: datagrams with another cluster id are ignored.
    ClusterId(u32)
);

impl SenderSeq {
    /// The next position.
    pub fn next(self) -> SenderSeq {
        SenderSeq(self.0 + 1)
    }
}

impl GlobalSeq {
    /// The next position.
    pub fn next(self) -> GlobalSeq {
        GlobalSeq(self.0 + 1)
    }
}

/// The delivery service a message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Order {
    /// Reliable, each sender's messages in the order sent.
    Fifo,
    /// Reliable, one order at every member (the sequencer's).
    Total,
    /// Total, and delivered only once every member of the view holds it.
    Safe,
}

impl Order {
    /// Wire code.
    pub fn code(self) -> u8 {
        match self {
            Order::Fifo => 1,
            Order::Total => 2,
            Order::Safe => 3,
        }
    }

    /// From a wire code.
    pub fn from_code(code: u8) -> Option<Order> {
        match code {
            1 => Some(Order::Fifo),
            2 => Some(Order::Total),
            3 => Some(Order::Safe),
            _ => None,
        }
    }

    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Fifo => "fifo",
            Order::Total => "total",
            Order::Safe => "safe",
        }
    }

    /// Parses the command-line / JSON name.
    pub fn parse(s: &str) -> Option<Order> {
        match s {
            "fifo" => Some(Order::Fifo),
            "total" => Some(Order::Total),
            "safe" => Some(Order::Safe),
            _ => None,
        }
    }
}

/// FNV-1a over a name: how a cluster name becomes a [`ClusterId`].
pub fn cluster_id_from_name(name: &str) -> ClusterId {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    ClusterId(h)
}

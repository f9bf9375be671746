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
    /// The term of the directory leader a daemon talks to: a replicated
    /// directory's leader serves under the Raft term it was elected in, so a
    /// later leader always has a higher epoch. 0: a single (unreplicated)
    /// directory, or none seen yet. A daemon that has seen epoch E refuses
    /// a Welcome of an epoch below E: it comes from a deposed leader.
    Epoch(u64)
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

/// Where a DATA message stands in the application message it carries.
///
/// A message larger than one datagram is split into consecutive positions
/// of its sender's stream: `First`, any number of `Middle`, `Last`. Each
/// piece is ordered like any message (so flow control, repair and
/// stability work piece by piece); a member delivers the whole message at
/// the position of its `Last` piece. The sequencer never puts a view marker
/// between the pieces of a live sender's message, so every member of a
/// view holds every piece of what is delivered in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Frag {
    /// A message in one piece.
    #[default]
    Whole,
    /// The first piece of a message; more follow.
    First,
    /// A piece between the first and the last.
    Middle,
    /// The last piece: the message is complete here.
    Last,
}

impl Frag {
    /// The two high bits of a DATA message's order byte.
    pub fn bits(self) -> u8 {
        match self {
            Frag::Whole => 0,
            Frag::First => 0x40,
            Frag::Middle => 0x80,
            Frag::Last => 0xC0,
        }
    }

    /// From an order byte's two high bits.
    pub fn from_bits(code: u8) -> Frag {
        match code & 0xC0 {
            0 => Frag::Whole,
            0x40 => Frag::First,
            0x80 => Frag::Middle,
            _ => Frag::Last,
        }
    }

    /// True when the message ends with this piece (`Whole` or `Last`).
    pub fn ends_message(self) -> bool {
        matches!(self, Frag::Whole | Frag::Last)
    }

    /// True when this piece continues a message begun earlier.
    pub fn continues(self) -> bool {
        matches!(self, Frag::Middle | Frag::Last)
    }

    /// The piece `i` of `n` (n >= 1).
    pub fn of(i: usize, n: usize) -> Frag {
        match (i, n) {
            (_, 0 | 1) => Frag::Whole,
            (0, _) => Frag::First,
            (i, n) if i + 1 == n => Frag::Last,
            _ => Frag::Middle,
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

//! The block of multicast addresses the directory hands to dynamic groups.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Shortest prefix accepted: a /8 already holds 16 million group addresses.
const PREFIX_LEN_MIN: u8 = 8;
/// Longest prefix accepted: a /30 leaves two usable addresses (see [`AddressPool::addresses`]).
const PREFIX_LEN_MAX: u8 = 30;

/// An IPv4 multicast block written as `BASE/PREFIX_LEN`, e.g. `239.192.100.0/24`.
///
/// A pool built by [`AddressPool::parse`] always lies inside 224.0.0.0/4, has a
/// prefix length in 8..=30 and has no host bits set in `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    /// The first address of the block (host bits zero).
    pub base: Ipv4Addr,
    /// Number of leading bits shared by every address of the block.
    pub prefix_len: u8,
}

impl AddressPool {
    /// The netmask as a number (`prefix_len` leading one bits).
    fn mask(&self) -> u32 {
        match self.prefix_len {
            0 => 0,
            n => u32::MAX << (32 - u32::from(n.min(32))),
        }
    }

    /// Whether `a` is anywhere in the block, first and last address included.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        let mask = self.mask();
        u32::from(a) & mask == u32::from(self.base) & mask
    }

    /// The addresses the directory may give out, in ascending order.
    ///
    /// As with unicast subnets, the all-zeros and all-ones host addresses of the
    /// block are left out: administrators size and read pools the familiar way
    /// (a /24 gives 254 groups), and the block's edges stay free for them to
    /// use by hand should they need to.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.base) & self.mask();
        let last = first | !self.mask();
        // `first + 1 ..= last - 1`; degenerate pools (/31, /32, which `parse`
        // rejects) yield nothing instead of underflowing.
        let (start, end) = if last - first >= 2 {
            (first + 1, last - 1)
        } else {
            (1, 0)
        };
        (start..=end).map(Ipv4Addr::from)
    }

    /// Parse `"239.192.100.0/24"`, checking that it is a multicast block of
    /// reasonable size. The error says what is wrong, for use in a message.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, len) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not of the form ADDRESS/PREFIX_LEN"))?;
        let base: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IPv4 address"))?;
        let prefix_len: u8 = len
            .parse()
            .map_err(|_| format!("`{len}` is not a prefix length"))?;
        if !(PREFIX_LEN_MIN..=PREFIX_LEN_MAX).contains(&prefix_len) {
            return Err(format!(
                "prefix length {prefix_len} is outside {PREFIX_LEN_MIN}..={PREFIX_LEN_MAX}"
            ));
        }
        if !base.is_multicast() {
            return Err(format!(
                "{base}/{prefix_len} is not inside the IPv4 multicast range 224.0.0.0/4"
            ));
        }
        let pool = AddressPool { base, prefix_len };
        let network = Ipv4Addr::from(u32::from(base) & pool.mask());
        if network != base {
            return Err(format!(
                "{base}/{prefix_len} has host bits set; did you mean {network}/{prefix_len}?"
            ));
        }
        Ok(pool)
    }
}

impl FromStr for AddressPool {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        AddressPool::parse(s)
    }
}

impl fmt::Display for AddressPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix_len)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_round_trip() {
        let p = AddressPool::parse("239.192.100.0/24").unwrap();
        assert_eq!(p.base, Ipv4Addr::new(239, 192, 100, 0));
        assert_eq!(p.prefix_len, 24);
        assert_eq!(p.to_string(), "239.192.100.0/24");
        assert_eq!("239.0.0.0/8".parse::<AddressPool>().unwrap().prefix_len, 8);
    }

    #[test]
    fn rejects_non_multicast_bad_lengths_and_host_bits() {
        for bad in [
            "10.0.0.0/8",
            "239.0.0.0/33",
            "239.0.0.0/7",
            "239.1.2.0/31",
            "239.1.2.0",
            "239.1.2/24",
            "239.1.2.0/x",
            "239.192.100.5/24",
            "240.0.0.0/8",
        ] {
            assert!(AddressPool::parse(bad).is_err(), "{bad} accepted");
        }
        let msg = AddressPool::parse("239.192.100.5/24").unwrap_err();
        assert!(msg.contains("239.192.100.0/24"), "{msg}");
    }

    #[test]
    fn contains_covers_the_whole_block() {
        let p = AddressPool::parse("239.192.100.0/24").unwrap();
        assert!(p.contains(Ipv4Addr::new(239, 192, 100, 0)));
        assert!(p.contains(Ipv4Addr::new(239, 192, 100, 255)));
        assert!(!p.contains(Ipv4Addr::new(239, 192, 101, 0)));
        assert!(!p.contains(Ipv4Addr::new(239, 192, 99, 255)));
    }

    #[test]
    fn addresses_skip_the_block_edges() {
        let p = AddressPool::parse("239.1.2.0/30").unwrap();
        let all: Vec<_> = p.addresses().collect();
        assert_eq!(
            all,
            vec![Ipv4Addr::new(239, 1, 2, 1), Ipv4Addr::new(239, 1, 2, 2)]
        );
        let p = AddressPool::parse("239.192.100.0/24").unwrap();
        assert_eq!(p.addresses().count(), 254);
        assert!(p.addresses().all(|a| p.contains(a)));
        assert_eq!(
            p.addresses().last(),
            Some(Ipv4Addr::new(239, 192, 100, 254))
        );
        let degenerate = AddressPool {
            base: Ipv4Addr::new(239, 1, 2, 0),
            prefix_len: 31,
        };
        assert_eq!(degenerate.addresses().count(), 0);
    }
}

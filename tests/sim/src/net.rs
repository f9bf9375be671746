//! The simulated network: per-link loss, duplication, delay and reordering,
//! MTU drops, a bounded queue per receiver, multicast fan-out with an
//! independent fate per receiver, partitions, clogged links and hosts.
//!
//! Addressing is chorusd's: DATA and ORDER go to a group's multicast
//! address and reach every node that joined it, the sender's own node
//! included (IP_MULTICAST_LOOP); a NAK goes to a node's `ip:DATA_PORT`
//! (its host); ORDER_ACK and ORDER_NAK go to `ip:ORDER_PORT` (its sequencer).

use crate::plan::{FaultKind, Plan, Span};
use crate::rng::Rng;
use crate::trace::Trace;
use crate::world::{Ev, Micros, Port, Sched};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;

/// Every node's data port.
pub const DATA_PORT: u16 = 7001;
/// Every node's sequencer port.
pub const ORDER_PORT: u16 = 7002;

/// The address of node `i`.
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, i as u8 + 1)
}

/// The node that owns a unicast address, if any.
pub fn node_of(ip: Ipv4Addr) -> Option<usize> {
    let o = ip.octets();
    (o[0] == 127 && o[1] == 0 && o[2] == 1 && o[3] > 0).then(|| usize::from(o[3]) - 1)
}

/// Why a datagram did not arrive (counted, and traced when tracing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    Loss,
    Partition,
    Mtu,
    Overflow,
    NoListener,
}

/// Counters of what the network did.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetStats {
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
}

/// The network between the simulated nodes.
#[derive(Debug)]
pub struct Network {
    n: usize,
    plan_links: Vec<crate::plan::LinkParams>,
    spans: Vec<Span>,
    queue_cap: usize,
    rng: Rng,
    healed: bool,
    /// Multicast memberships: address → bit set of nodes.
    groups: BTreeMap<SocketAddrV4, u64>,
    in_flight: Vec<usize>,
    pub stats: NetStats,
}

impl Network {
    /// The network a plan describes.
    pub fn new(plan: &Plan, rng: Rng) -> Network {
        Network {
            n: plan.n(),
            plan_links: plan.links.clone(),
            spans: plan.spans.clone(),
            queue_cap: plan.queue_cap,
            rng,
            healed: false,
            groups: BTreeMap::new(),
            in_flight: vec![0; plan.n()],
            stats: NetStats::default(),
        }
    }

    /// Ends every fault: no more loss, duplication, partitions, clogs or
    /// overflow (delay and reordering stay).
    pub fn heal(&mut self) {
        self.healed = true;
    }

    /// Node `node` joins or leaves a multicast group.
    pub fn set_member(&mut self, addr: SocketAddrV4, node: usize, joined: bool) {
        let bits = self.groups.entry(addr).or_insert(0);
        if joined {
            *bits |= 1 << node;
        } else {
            *bits &= !(1 << node);
        }
    }

    /// Forgets every membership of a node (it crashed).
    pub fn forget_node(&mut self, node: usize) {
        for bits in self.groups.values_mut() {
            *bits &= !(1 << node);
        }
    }

    /// True if `node` has joined the group at `addr`.
    pub fn is_member(&self, addr: SocketAddrV4, node: usize) -> bool {
        self.groups.get(&addr).is_some_and(|b| b & (1 << node) != 0)
    }

    /// A datagram leaves node `src` (from its data socket, or with
    /// `from_order` its sequencer socket) for `dest`.
    pub fn send(
        &mut self,
        s: &mut Sched,
        tr: &mut Trace,
        src: usize,
        from_order: bool,
        dest: SocketAddrV4,
        bytes: &[u8],
    ) {
        self.stats.sent += 1;
        let from = SocketAddrV4::new(
            node_ip(src),
            if from_order { ORDER_PORT } else { DATA_PORT },
        );
        let bytes: Rc<[u8]> = Rc::from(bytes);
        if dest.ip().is_multicast() {
            let members = self.groups.get(&dest).copied().unwrap_or(0);
            for dst in 0..self.n {
                if members & (1 << dst) != 0 {
                    self.route(s, tr, src, dst, Port::Data, from, &bytes);
                }
            }
        } else if let Some(dst) = node_of(*dest.ip()).filter(|&d| d < self.n) {
            let port = if dest.port() == ORDER_PORT {
                Port::Order
            } else {
                Port::Data
            };
            self.route(s, tr, src, dst, port, from, &bytes);
        } else {
            self.drop(tr, src, usize::MAX, Drop::NoListener, &bytes);
        }
    }

    /// A queued datagram was taken off the wire at `node`.
    pub fn arrived(&mut self, node: usize) {
        self.in_flight[node] = self.in_flight[node].saturating_sub(1);
        self.stats.delivered += 1;
    }

    #[allow(clippy::too_many_arguments)]
    /// The link's fate now: `None` if a partition cuts it, else the loss
    /// to apply, the MTU, and until when a clog holds datagrams.
    fn link_now(&self, now: Micros, src: usize, dst: usize) -> Option<(u32, usize, Micros)> {
        let link = &self.plan_links[src * self.n + dst];
        if self.healed {
            return Some((0, link.mtu_bytes, 0));
        }
        let (mut loss, mut mtu, mut held_until) = (link.loss_ppm, link.mtu_bytes, 0);
        for sp in self
            .spans
            .iter()
            .filter(|sp| sp.start <= now && now < sp.end)
        {
            match sp.kind {
                FaultKind::Partition { side, symmetric } => {
                    let a = side & (1 << src) != 0;
                    let b = side & (1 << dst) != 0;
                    if a != b && (symmetric || a) {
                        return None;
                    }
                }
                FaultKind::ClogLink { from, to } if from == src && to == dst => {
                    held_until = held_until.max(sp.end)
                }
                FaultKind::ClogHost { node } if node == src || node == dst => {
                    held_until = held_until.max(sp.end)
                }
                FaultKind::Mtu { node, mtu_bytes } if node == dst => mtu = mtu.min(mtu_bytes),
                FaultKind::LossBurst { node, loss_ppm } if node == dst => loss = loss.max(loss_ppm),
                _ => {}
            }
        }
        Some((loss, mtu, held_until))
    }

    #[allow(clippy::too_many_arguments)]
    fn route(
        &mut self,
        s: &mut Sched,
        tr: &mut Trace,
        src: usize,
        dst: usize,
        port: Port,
        from: SocketAddrV4,
        bytes: &Rc<[u8]>,
    ) {
        let now = s.now;
        let Some((loss, mtu, held_until)) = self.link_now(now, src, dst) else {
            return self.drop(tr, src, dst, Drop::Partition, bytes);
        };
        if bytes.len() > mtu {
            return self.drop(tr, src, dst, Drop::Mtu, bytes);
        }
        if self.rng.chance_ppm(loss) {
            return self.drop(tr, src, dst, Drop::Loss, bytes);
        }
        let link = self.plan_links[src * self.n + dst];
        let copies = if !self.healed && self.rng.chance_ppm(link.dup_ppm) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            if !self.healed && self.in_flight[dst] >= self.queue_cap {
                return self.drop(tr, src, dst, Drop::Overflow, bytes);
            }
            let delay = link.delay_min_us + self.rng.below(link.jitter_us + 1);
            let at = (now + delay).max(held_until + self.rng.below(200));
            self.in_flight[dst] += 1;
            s.at(
                at,
                Ev::Datagram {
                    node: dst,
                    port,
                    from,
                    bytes: bytes.clone(),
                    forged: None,
                },
            );
        }
        if copies == 2 {
            self.stats.duplicated += 1;
        }
    }

    fn drop(&mut self, tr: &mut Trace, src: usize, dst: usize, why: Drop, bytes: &[u8]) {
        self.stats.dropped += 1;
        if tr.on() {
            let to = if dst == usize::MAX {
                "?".to_owned()
            } else {
                format!("h{dst}")
            };
            tr.line(format_args!(
                "h{src} net-drop {why:?} ->{to} {}",
                crate::trace::datagram(bytes)
            ));
        }
    }

    /// The extra delay of frames between `node` and the directory now.
    pub fn dir_delay(&self, now: Micros, node: usize) -> Micros {
        if self.healed {
            return 0;
        }
        self.spans
            .iter()
            .filter(|sp| sp.start <= now && now < sp.end)
            .filter_map(|sp| match sp.kind {
                FaultKind::DirDelay { node: n, extra_us } if n == node => Some(extra_us),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }
}

//! Links, addresses and routes over rtnetlink (netlink-packet-route on a
//! blocking netlink-sys socket, the crates libcontainer itself uses): the
//! effects behind [`crate::uplink`].
//!
//! A socket works in the network namespace of the thread that opened it,
//! so the same code configures the host's side and, from a thread that
//! entered it, the sandbox's.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};

use crate::{Error, Result};

fn err(op: impl Into<String>, source: std::io::Error) -> Error {
    Error::Uplink {
        op: op.into(),
        source,
    }
}

/// A route socket in the current thread's network namespace.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// One link, as a dump reports it.
#[derive(Debug, Clone)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub alias: Option<String>,
}

fn family(a: IpAddr) -> AddressFamily {
    if a.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

impl Rtnl {
    pub fn open() -> Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| err("open a route socket", e))?;
        sock.bind_auto()
            .map_err(|e| err("bind a route socket", e))?;
        // Acks without the request echoed back: smaller reads.
        let _ = sock.set_cap_ack(true);
        Ok(Rtnl {
            sock,
            seq: 0,
            buf: vec![0; 32 * 1024],
        })
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<u32> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        m.finalize();
        let mut bytes = vec![0; m.buffer_len()];
        m.serialize(&mut bytes);
        self.sock
            .send(&bytes, 0)
            .map_err(|e| err("send a route request", e))?;
        Ok(self.seq)
    }

    /// Reads answers to `seq` until its ack or the end of its dump; calls
    /// `f` on each inner message. A negative ack is the error.
    fn answers(
        &mut self,
        seq: u32,
        op: &str,
        mut f: impl FnMut(RouteNetlinkMessage),
    ) -> Result<()> {
        loop {
            let n = self
                .sock
                .recv(&mut &mut self.buf[..], 0)
                .map_err(|e| err(format!("{op}: read the answer"), e))?;
            let mut off = 0;
            while off < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n])
                    .map_err(|e| {
                        err(
                            format!("{op}: read the answer"),
                            std::io::Error::other(e.to_string()),
                        )
                    })?;
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                off += len.next_multiple_of(4);
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(()),
                            Some(code) => Err(err(
                                op.to_owned(),
                                std::io::Error::from_raw_os_error(-code.get()),
                            )),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::InnerMessage(m) => f(m),
                    _ => {}
                }
            }
        }
    }

    /// Sends one request and waits for its ack.
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16, op: &str) -> Result<()> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_ACK | flags)?;
        self.answers(seq, op, |_| {})
    }

    /// Creates a veth pair: `name` here, with `alias` (`ip link` shows it),
    /// and `peer` directly inside the network namespace `peer_ns`. Fails
    /// with EEXIST when a link `name` exists.
    pub fn add_veth(
        &mut self,
        name: &str,
        alias: &str,
        peer: &str,
        peer_ns: BorrowedFd,
    ) -> Result<()> {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.into()));
        p.attributes
            .push(LinkAttribute::NetNsFd(peer_ns.as_raw_fd()));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m.attributes.push(LinkAttribute::IfAlias(alias.into()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("create the veth pair {name}/{peer}"),
        )
    }

    /// The links of this namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let seq = self.send(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        self.answers(seq, "list links", |m| {
            if let RouteNetlinkMessage::NewLink(l) = m {
                let mut link = Link {
                    index: l.header.index,
                    name: String::new(),
                    alias: None,
                };
                for a in l.attributes {
                    match a {
                        LinkAttribute::IfName(n) => link.name = n,
                        LinkAttribute::IfAlias(a) => link.alias = Some(a),
                        _ => {}
                    }
                }
                out.push(link);
            }
        })?;
        Ok(out)
    }

    /// The index of link `name`, if it exists.
    pub fn index(&mut self, name: &str) -> Result<Option<u32>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        // With an ack requested, the answer is followed by one.
        let seq = self.send(RouteNetlinkMessage::GetLink(m), NLM_F_REQUEST | NLM_F_ACK)?;
        let mut index = None;
        match self.answers(seq, &format!("find link {name}"), |m| {
            if let RouteNetlinkMessage::NewLink(l) = m {
                index = Some(l.header.index);
            }
        }) {
            Ok(()) => Ok(index),
            Err(Error::Uplink { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Sets link `index` up.
    pub fn up(&mut self, index: u32, what: &str) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.request(
            RouteNetlinkMessage::SetLink(m),
            0,
            &format!("set {what} up"),
        )
    }

    /// Deletes link `name` (and, for a veth, its peer); `Ok(false)` when
    /// there is none.
    pub fn delete_link(&mut self, name: &str) -> Result<bool> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        match self.request(
            RouteNetlinkMessage::DelLink(m),
            0,
            &format!("delete link {name}"),
        ) {
            Ok(()) => Ok(true),
            Err(Error::Uplink { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Adds `addr/prefix` to link `index`, without duplicate address
    /// detection (IPv6): the peer is the only other host on the link.
    pub fn add_address(&mut self, index: u32, addr: IpAddr, prefix: u8, what: &str) -> Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = family(addr);
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(addr));
        m.attributes.push(AddressAttribute::Address(addr));
        if addr.is_ipv6() {
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("add address {addr}/{prefix} to {what}"),
        )
    }

    /// Adds a route to `dst/prefix` out of link `oif`, through `via` or
    /// directly (scope link). `exclusive`: fail with EEXIST if the main
    /// table already has a route to `dst/prefix` through any link, which
    /// makes the route a lock on the destination (see uplink).
    pub fn add_route(
        &mut self,
        dst: IpAddr,
        prefix: u8,
        oif: u32,
        via: Option<IpAddr>,
        exclusive: bool,
        what: &str,
    ) -> Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = family(dst);
        m.header.destination_prefix_length = prefix;
        m.header.table = libc::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Static;
        m.header.kind = RouteType::Unicast;
        m.header.scope = if via.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if prefix > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        }
        if let Some(gw) = via {
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        m.attributes.push(RouteAttribute::Oif(oif));
        let excl = if exclusive { NLM_F_EXCL } else { 0 };
        self.request(
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | excl,
            &format!("add a route to {dst}/{prefix} via {what}"),
        )
    }
}

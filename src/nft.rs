//! Installs a [`Ruleset`] in the calling thread's network namespace as ONE
//! nftables transaction, written directly as nfnetlink messages (the
//! effect at the edge of [`crate::netpolicy`]).
//!
//! Why by hand: the messages are a few TLVs per object, the kernel's own
//! uapi header is the whole specification, and it costs no C library, no
//! build step and no subprocess (`nft -f` takes milliseconds just to start).
//! The batch — begin, create-if-absent + delete + create the table,
//! counters, sets, elements, chains, rules, end — is validated and
//! committed by the kernel as a whole, or aborted as a whole: a rejected
//! ruleset leaves nothing behind, not even the table.
//!
//! Also here: reading counters and recorded drops back, deleting the table,
//! and [`apply_with_nft`], the same ruleset through `nft -f -` (the
//! reference the benchmark and the tests compare with). [`host`] keeps the
//! host's shared table of standalone sandboxes, element by element.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

use crate::netpolicy::compile::{
    ChainType, Field, Hook, IfName, Key, Match, Ruleset, Set, Statement, Verdict, ifname_value,
};
use crate::{Error, Result};

pub mod host;

pub use crate::netpolicy::host::HostElement;
pub use host::{
    Detached, HOST_LOCK, host_attach, host_attach_on, host_collect, host_detach, host_detach_on,
    host_elements, host_sweep,
};

// linux/netfilter/nfnetlink.h, nf_tables.h, netfilter.h (uapi: stable).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_NEWOBJ: u16 = 18;
const NFT_MSG_GETOBJ: u16 = 19;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_RANGE_SREG: u16 = 1;
const NFTA_RANGE_OP: u16 = 2;
const NFTA_RANGE_FROM_DATA: u16 = 3;
const NFTA_RANGE_TO_DATA: u16 = 4;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_SET_ID: u16 = 4;
const NFTA_DYNSET_SET_NAME: u16 = 1;
const NFTA_DYNSET_SET_ID: u16 = 2;
const NFTA_DYNSET_OP: u16 = 3;
const NFTA_DYNSET_SREG_KEY: u16 = 4;
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_OBJREF_IMM_TYPE: u16 = 1;
const NFTA_OBJREF_IMM_NAME: u16 = 2;
const NFTA_OBJ_TABLE: u16 = 1;
const NFTA_OBJ_NAME: u16 = 2;
const NFTA_OBJ_TYPE: u16 = 3;
const NFTA_OBJ_DATA: u16 = 4;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DESC: u16 = 9;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_TIMEOUT: u16 = 11;
const NFTA_SET_EXPR: u16 = 17;
const NFTA_SET_DESC_SIZE: u16 = 1;
const NFTA_SET_DESC_CONCAT: u16 = 2;
const NFTA_SET_FIELD_LEN: u16 = 1;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_SET_ELEM_EXPIRATION: u16 = 5;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_SET_ELEM_EXPR: u16 = 7;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_SET_ELEM_EXPRESSIONS: u16 = 11;

const NFT_SET_INTERVAL: u32 = 0x4;
const NFT_SET_TIMEOUT: u32 = 0x10;
const NFT_SET_EVAL: u32 = 0x20;
const NFT_SET_CONCAT: u32 = 0x80;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_CT_STATE: u32 = 0;
const NFT_REG_VERDICT: u32 = 0;
/// The first 32-bit register; a concatenation fills consecutive ones.
const NFT_REG32_00: u32 = 8;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_RANGE_EQ: u32 = 0;
const NFT_DYNSET_OP_UPDATE: u32 = 1;
const NFT_OBJECT_COUNTER: u32 = 1;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NF_INET_LOCAL_IN: u32 = 1;
const NF_INET_FORWARD: u32 = 2;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_INET_POST_ROUTING: u32 = 4;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const IPPROTO_ICMPV6: u8 = 58;
/// nf_conntrack_common.h: NF_CT_STATE_BIT(IP_CT_ESTABLISHED | IP_CT_RELATED).
const CT_ESTABLISHED_RELATED: u32 = 0x2 | 0x4;
/// nft's datatype numbers are shifted by this much per concatenated field.
const TYPE_BITS: u32 = 6;
/// libnftnl's udata.h: the TLV type of an element's comment.
const NFTNL_UDATA_SET_ELEM_COMMENT: u8 = 0;

const NLA_F_NESTED: u16 = 0x8000;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_DUMP_INTR: u16 = 0x10;
/// A netlink message: type, sequence number, payload, NLM_F_DUMP_INTR.
type Received = (u16, u32, Vec<u8>, bool);
/// How many times a dump interrupted by concurrent changes is asked again.
const DUMP_TRIES: usize = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NETLINK_CAP_ACK: libc::c_int = 10;

// ---- encoding ----

/// A growing netlink buffer: messages of nested attributes.
#[derive(Default)]
struct Buf {
    b: Vec<u8>,
}

impl Buf {
    fn align(&mut self) {
        while !self.b.len().is_multiple_of(4) {
            self.b.push(0);
        }
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        self.b.extend(((4 + data.len()) as u16).to_ne_bytes());
        self.b.extend(ty.to_ne_bytes());
        self.b.extend(data);
        self.align();
    }

    fn str(&mut self, ty: u16, s: &str) {
        let mut z = s.as_bytes().to_vec();
        z.push(0);
        self.attr(ty, &z);
    }

    /// Integers in nftables attributes are big-endian.
    fn u32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }

    fn u64(&mut self, ty: u16, v: u64) {
        self.attr(ty, &v.to_be_bytes());
    }

    fn nest(&mut self, ty: u16, f: impl FnOnce(&mut Buf)) {
        let start = self.b.len();
        self.b.extend([0; 4]);
        f(self);
        let len = u16::try_from(self.b.len() - start).expect("a netlink attribute over 64 KiB");
        self.b[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.b[start + 2..start + 4].copy_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    }

    /// `NFTA_DATA_VALUE` wrapped in `ty`.
    fn value(&mut self, ty: u16, data: &[u8]) {
        self.nest(ty, |b| b.attr(NFTA_DATA_VALUE, data));
    }

    /// One message: nlmsghdr + nfgenmsg + attributes.
    fn msg(
        &mut self,
        ty: u16,
        flags: u16,
        seq: u32,
        family: u8,
        res_id: u16,
        f: impl FnOnce(&mut Buf),
    ) {
        let start = self.b.len();
        self.b.extend([0; 4]); // length, patched below
        self.b.extend(ty.to_ne_bytes());
        self.b.extend(flags.to_ne_bytes());
        self.b.extend(seq.to_ne_bytes());
        self.b.extend(0u32.to_ne_bytes()); // port id: the kernel's
        self.b.extend([family, 0]); // nfgenmsg: family, version 0
        self.b.extend(res_id.to_be_bytes());
        f(self);
        self.align();
        let len = (self.b.len() - start) as u32;
        self.b[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn expr(&mut self, name: &str, f: impl FnOnce(&mut Buf)) {
        self.nest(NFTA_LIST_ELEM, |b| {
            b.str(NFTA_EXPR_NAME, name);
            b.nest(NFTA_EXPR_DATA, f);
        });
    }
}

fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// A key's bytes: in a concatenation each field is zero-padded to 4, as
/// in registers; a single field is just its value.
fn key_bytes(fields: &[Field], values: impl Iterator<Item = u128>) -> Vec<u8> {
    let mut out = Vec::new();
    for (f, v) in fields.iter().zip(values) {
        out.extend(f.encode(v));
        while fields.len() > 1 && !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    out
}

fn regs(len: usize) -> u32 {
    len.div_ceil(4) as u32
}

/// One transaction being written: begin, messages with sequence numbers
/// from 1 that each ask for an ack, end.
struct Batch {
    b: Buf,
    /// What each message does, by sequence number - 1 (for errors).
    what: Vec<String>,
}

const CREATE: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE;
const ACKED: u16 = NLM_F_REQUEST | NLM_F_ACK;

impl Batch {
    fn new() -> Batch {
        let mut b = Batch {
            b: Buf::default(),
            what: Vec::new(),
        };
        b.control(NFNL_MSG_BATCH_BEGIN, 0);
        b
    }

    fn control(&mut self, ty: u16, seq: u32) {
        self.b.msg(
            ty,
            NLM_F_REQUEST,
            seq,
            libc::AF_UNSPEC as u8,
            NFNL_SUBSYS_NFTABLES,
            |_| {},
        )
    }

    /// An nf_tables message of the inet family.
    fn msg(&mut self, what: String, ty: u16, flags: u16, f: impl FnOnce(&mut Buf)) {
        self.what.push(what);
        let seq = self.what.len() as u32;
        self.b.msg(nft_type(ty), flags, seq, NFPROTO_INET, 0, f);
    }

    /// The bytes, and what each message does.
    fn finish(mut self) -> (Vec<u8>, Vec<String>) {
        let seq = self.what.len() as u32 + 1;
        self.control(NFNL_MSG_BATCH_END, seq);
        (self.b.b, self.what)
    }
}

/// The transaction that installs `r`, replacing a previous table of the
/// same name.
fn encode(r: &Ruleset) -> (Vec<u8>, Vec<String>) {
    let mut b = Batch::new();
    let t = r.table.as_str();
    // Replace: create if absent, delete, create — all in this transaction.
    for (op, ty, flags) in [
        ("create table", NFT_MSG_NEWTABLE, CREATE),
        ("delete the previous table", NFT_MSG_DELTABLE, ACKED),
        ("create table", NFT_MSG_NEWTABLE, CREATE),
    ] {
        b.msg(format!("{op} inet {t}"), ty, flags, |b| {
            b.str(NFTA_TABLE_NAME, t)
        });
    }
    objects(&mut b, r);
    b.finish()
}

/// Everything in `r` but the table itself: counters, sets and their
/// elements, chains, rules.
fn objects(b: &mut Batch, r: &Ruleset) {
    let t = r.table.as_str();
    for c in &r.counters {
        b.msg(format!("create counter {c}"), NFT_MSG_NEWOBJ, CREATE, |b| {
            b.str(NFTA_OBJ_TABLE, t);
            b.str(NFTA_OBJ_NAME, c);
            b.u32(NFTA_OBJ_TYPE, NFT_OBJECT_COUNTER);
            b.nest(NFTA_OBJ_DATA, |b| {
                b.u64(NFTA_COUNTER_BYTES, 0);
                b.u64(NFTA_COUNTER_PACKETS, 0);
            });
        });
    }

    for set in &r.sets {
        let id = set_id(r, set.name);
        b.msg(
            format!("create set {}", set.name),
            NFT_MSG_NEWSET,
            CREATE,
            |b| new_set(b, t, set, id),
        );
        let elements: Vec<Elem> = set
            .elements
            .iter()
            .map(|e| Elem {
                key: key_bytes(&set.fields, e.0.iter().map(|r| r.0)),
                key_end: set
                    .interval
                    .then(|| key_bytes(&set.fields, e.0.iter().map(|r| r.1))),
                comment: None,
                timeout_ms: None,
            })
            .collect();
        set_elements(b, ElemOp::Add, t, set.name, Some(id), &elements);
    }

    for c in &r.chains {
        b.msg(
            format!("create chain {}", c.name),
            NFT_MSG_NEWCHAIN,
            CREATE,
            |b| {
                b.str(NFTA_CHAIN_TABLE, t);
                b.str(NFTA_CHAIN_NAME, c.name);
                b.nest(NFTA_CHAIN_HOOK, |b| {
                    let hook = match c.hook {
                        Hook::Input => NF_INET_LOCAL_IN,
                        Hook::Output => NF_INET_LOCAL_OUT,
                        Hook::Forward => NF_INET_FORWARD,
                        Hook::Postrouting => NF_INET_POST_ROUTING,
                    };
                    b.u32(NFTA_HOOK_HOOKNUM, hook);
                    b.u32(NFTA_HOOK_PRIORITY, c.priority.value() as u32);
                });
                b.u32(NFTA_CHAIN_POLICY, verdict_code(c.policy));
                b.str(
                    NFTA_CHAIN_TYPE,
                    match c.kind {
                        ChainType::Filter => "filter",
                        ChainType::Nat => "nat",
                    },
                );
            },
        );
        for (n, rule) in c.rules.iter().enumerate() {
            b.msg(
                format!("add rule {} of chain {}", n + 1, c.name),
                NFT_MSG_NEWRULE,
                CREATE | NLM_F_APPEND,
                |b| {
                    b.str(NFTA_RULE_TABLE, t);
                    b.str(NFTA_RULE_CHAIN, c.name);
                    b.nest(NFTA_RULE_EXPRESSIONS, |b| rule_exprs(b, r, rule));
                },
            );
        }
    }
}

fn verdict_code(v: Verdict) -> u32 {
    match v {
        Verdict::Accept => NF_ACCEPT,
        Verdict::Drop => NF_DROP,
    }
}

/// One set element as sent: its key (and range end), a comment, and a
/// timeout in milliseconds (sets with timeouts only).
struct Elem {
    key: Vec<u8>,
    key_end: Option<Vec<u8>>,
    comment: Option<String>,
    timeout_ms: Option<u64>,
}

#[derive(Clone, Copy)]
enum ElemOp {
    Add,
    Delete,
}

/// Messages that add `elements` to a set, or delete them from it (by key).
/// An attribute's length is 16 bits: the list is split over messages of
/// at most about 60 KB, all in the same batch.
fn set_elements(
    b: &mut Batch,
    op: ElemOp,
    table: &str,
    set: &str,
    set_id: Option<u32>,
    elements: &[Elem],
) {
    let encoded: Vec<Vec<u8>> = elements
        .iter()
        .map(|e| {
            let mut eb = Buf::default();
            eb.nest(NFTA_LIST_ELEM, |b| {
                b.value(NFTA_SET_ELEM_KEY, &e.key);
                if let Some(end) = &e.key_end {
                    b.value(NFTA_SET_ELEM_KEY_END, end);
                }
                if let Some(c) = &e.comment {
                    b.attr(NFTA_SET_ELEM_USERDATA, &comment_udata(c));
                }
                if let Some(ms) = e.timeout_ms {
                    b.u64(NFTA_SET_ELEM_TIMEOUT, ms);
                }
            });
            eb.b
        })
        .collect();
    let (ty, flags, what) = match op {
        ElemOp::Add => (NFT_MSG_NEWSETELEM, CREATE, "add elements to"),
        ElemOp::Delete => (NFT_MSG_DELSETELEM, ACKED, "delete elements from"),
    };
    let mut rest = &encoded[..];
    while !rest.is_empty() {
        let mut size = 0;
        let n = rest
            .iter()
            .take_while(|e| {
                size += e.len();
                size <= 60_000
            })
            .count()
            .max(1);
        let (chunk, more) = rest.split_at(n);
        rest = more;
        b.msg(format!("{what} set {set}"), ty, flags, |b| {
            b.str(NFTA_SET_ELEM_LIST_TABLE, table);
            b.str(NFTA_SET_ELEM_LIST_SET, set);
            if let Some(id) = set_id {
                b.u32(NFTA_SET_ELEM_LIST_SET_ID, id);
            }
            b.nest(NFTA_SET_ELEM_LIST_ELEMENTS, |b| {
                for e in chunk {
                    b.b.extend_from_slice(e);
                }
            });
        });
    }
}

/// An element comment as nft writes it: one NFTNL_UDATA_SET_ELEM_COMMENT
/// TLV (type, length, the string with its zero).
fn comment_udata(comment: &str) -> Vec<u8> {
    let len = (comment.len() + 1).min(255);
    let mut u = vec![NFTNL_UDATA_SET_ELEM_COMMENT, len as u8];
    u.extend(&comment.as_bytes()[..len - 1]);
    u.push(0);
    u
}

/// The comment in an element's userdata, if any.
fn udata_comment(mut u: &[u8]) -> Option<String> {
    while u.len() >= 2 {
        let (ty, len) = (u[0], u[1] as usize);
        let value = u.get(2..2 + len)?;
        if ty == NFTNL_UDATA_SET_ELEM_COMMENT {
            return Some(cstr(value));
        }
        u = &u[2 + len..];
    }
    None
}

fn new_set(b: &mut Buf, table: &str, set: &Set, id: u32) {
    let concat = set.fields.len() > 1;
    let mut flags = 0;
    if set.interval {
        flags |= NFT_SET_INTERVAL;
        if concat {
            flags |= NFT_SET_CONCAT;
        }
    }
    if set.dynamic.is_some() {
        flags |= NFT_SET_EVAL;
    }
    if set.timeout {
        flags |= NFT_SET_TIMEOUT;
    }
    let key_type = set
        .fields
        .iter()
        .fold(0, |t, f| (t << TYPE_BITS) | f.type_id());
    let key_len: usize = set.fields.iter().map(|f| 4 * regs(f.size()) as usize).sum();
    let key_len = if concat {
        key_len
    } else {
        set.fields[0].size()
    };
    b.str(NFTA_SET_TABLE, table);
    b.str(NFTA_SET_NAME, set.name);
    b.u32(NFTA_SET_FLAGS, flags);
    b.u32(NFTA_SET_KEY_TYPE, key_type);
    b.u32(NFTA_SET_KEY_LEN, key_len as u32);
    b.u32(NFTA_SET_ID, id);
    if let Some(t) = set.default_timeout_s {
        b.u64(NFTA_SET_TIMEOUT, u64::from(t) * 1000);
    }
    if set.dynamic.is_some() || (set.interval && concat) {
        b.nest(NFTA_SET_DESC, |b| {
            if let Some(size) = set.dynamic {
                b.u32(NFTA_SET_DESC_SIZE, size);
            }
            if set.interval && concat {
                // The field lengths let the kernel pick pipapo (ranges
                // per field of a concatenation).
                b.nest(NFTA_SET_DESC_CONCAT, |b| {
                    for f in &set.fields {
                        b.nest(NFTA_LIST_ELEM, |b| {
                            b.u32(NFTA_SET_FIELD_LEN, f.size() as u32)
                        });
                    }
                });
            }
        });
    }
    if set.counter {
        b.nest(NFTA_SET_EXPR, |b| {
            b.str(NFTA_EXPR_NAME, "counter");
            b.nest(NFTA_EXPR_DATA, |_| {});
        });
    }
}

fn meta(b: &mut Buf, key: u32, dreg: u32) {
    b.expr("meta", |b| {
        b.u32(NFTA_META_KEY, key);
        b.u32(NFTA_META_DREG, dreg);
    });
}

fn cmp(b: &mut Buf, op: u32, sreg: u32, data: &[u8]) {
    b.expr("cmp", |b| {
        b.u32(NFTA_CMP_SREG, sreg);
        b.u32(NFTA_CMP_OP, op);
        b.value(NFTA_CMP_DATA, data);
    });
}

fn payload(b: &mut Buf, base: u32, offset: u32, len: u32, dreg: u32) {
    b.expr("payload", |b| {
        b.u32(NFTA_PAYLOAD_DREG, dreg);
        b.u32(NFTA_PAYLOAD_BASE, base);
        b.u32(NFTA_PAYLOAD_OFFSET, offset);
        b.u32(NFTA_PAYLOAD_LEN, len);
    });
}

fn nfproto(b: &mut Buf, proto: u8) {
    meta(b, NFT_META_NFPROTO, NFT_REG32_00);
    cmp(b, NFT_CMP_EQ, NFT_REG32_00, &[proto]);
}

/// Loads a concatenation into consecutive registers from `NFT_REG32_00`.
fn load_keys(b: &mut Buf, keys: &[Key]) {
    let mut reg = NFT_REG32_00;
    for k in keys {
        match k {
            Key::Ip4Saddr => payload(b, NFT_PAYLOAD_NETWORK_HEADER, 12, 4, reg),
            Key::Ip4Daddr => payload(b, NFT_PAYLOAD_NETWORK_HEADER, 16, 4, reg),
            Key::Ip6Saddr => payload(b, NFT_PAYLOAD_NETWORK_HEADER, 8, 16, reg),
            Key::Ip6Daddr => payload(b, NFT_PAYLOAD_NETWORK_HEADER, 24, 16, reg),
            Key::IifName => meta(b, NFT_META_IIFNAME, reg),
            Key::L4Proto => meta(b, NFT_META_L4PROTO, reg),
            Key::Dport => payload(b, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg),
        }
        reg += regs(k.field().size());
    }
}

fn set_id(r: &Ruleset, name: &str) -> u32 {
    r.sets
        .iter()
        .position(|s| s.name == name)
        .map_or(0, |i| i as u32 + 1)
}

fn rule_exprs(b: &mut Buf, r: &Ruleset, rule: &crate::netpolicy::compile::Rule) {
    // An IPv4 or IPv6 address anywhere in the rule restricts it to that
    // family: inet chains see both.
    let keys = rule.matches.iter().filter_map(|m| match m {
        Match::InSet(k, _) => Some(k),
        _ => None,
    });
    let stmt_keys = rule.statements.iter().filter_map(|s| match s {
        Statement::Update(_, k) => Some(k),
        _ => None,
    });
    let all: Vec<Key> = keys.chain(stmt_keys).flatten().copied().collect();
    if all.iter().any(|k| k.field() == Field::Ipv4Addr) {
        nfproto(b, NFPROTO_IPV4);
    } else if all.iter().any(|k| k.field() == Field::Ipv6Addr) {
        nfproto(b, NFPROTO_IPV6);
    }
    for m in &rule.matches {
        match m {
            Match::IifName(name) | Match::OifName(name) => {
                let key = if matches!(m, Match::IifName(_)) {
                    NFT_META_IIFNAME
                } else {
                    NFT_META_OIFNAME
                };
                // A whole name is compared with its zero padding; a
                // prefix, on its own bytes only.
                let data = match name {
                    IfName::Exact(n) => Field::IfName.encode(ifname_value(n)),
                    IfName::Prefix(p) => p.as_bytes().to_vec(),
                };
                meta(b, key, NFT_REG32_00);
                cmp(b, NFT_CMP_EQ, NFT_REG32_00, &data);
            }
            Match::EstablishedRelated => {
                b.expr("ct", |b| {
                    b.u32(NFTA_CT_KEY, NFT_CT_STATE);
                    b.u32(NFTA_CT_DREG, NFT_REG32_00);
                });
                // The state is a host-order bitmask.
                b.expr("bitwise", |b| {
                    b.u32(NFTA_BITWISE_SREG, NFT_REG32_00);
                    b.u32(NFTA_BITWISE_DREG, NFT_REG32_00);
                    b.u32(NFTA_BITWISE_LEN, 4);
                    b.value(NFTA_BITWISE_MASK, &CT_ESTABLISHED_RELATED.to_ne_bytes());
                    b.value(NFTA_BITWISE_XOR, &0u32.to_ne_bytes());
                });
                cmp(b, NFT_CMP_NEQ, NFT_REG32_00, &0u32.to_ne_bytes());
            }
            Match::Icmpv6Types(first, last) => {
                nfproto(b, NFPROTO_IPV6);
                meta(b, NFT_META_L4PROTO, NFT_REG32_00);
                cmp(b, NFT_CMP_EQ, NFT_REG32_00, &[IPPROTO_ICMPV6]);
                payload(b, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1, NFT_REG32_00);
                b.expr("range", |b| {
                    b.u32(NFTA_RANGE_SREG, NFT_REG32_00);
                    b.u32(NFTA_RANGE_OP, NFT_RANGE_EQ);
                    b.value(NFTA_RANGE_FROM_DATA, &[*first]);
                    b.value(NFTA_RANGE_TO_DATA, &[*last]);
                });
            }
            Match::L4Proto(p) => {
                meta(b, NFT_META_L4PROTO, NFT_REG32_00);
                cmp(b, NFT_CMP_EQ, NFT_REG32_00, &[p.number()]);
            }
            Match::Dport(p) => {
                payload(b, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, NFT_REG32_00);
                if p.first == p.last {
                    cmp(b, NFT_CMP_EQ, NFT_REG32_00, &p.first.to_be_bytes());
                } else {
                    b.expr("range", |b| {
                        b.u32(NFTA_RANGE_SREG, NFT_REG32_00);
                        b.u32(NFTA_RANGE_OP, NFT_RANGE_EQ);
                        b.value(NFTA_RANGE_FROM_DATA, &p.first.to_be_bytes());
                        b.value(NFTA_RANGE_TO_DATA, &p.last.to_be_bytes());
                    });
                }
            }
            Match::InSet(keys, set) => {
                load_keys(b, keys);
                b.expr("lookup", |b| {
                    b.str(NFTA_LOOKUP_SET, set);
                    b.u32(NFTA_LOOKUP_SREG, NFT_REG32_00);
                    b.u32(NFTA_LOOKUP_SET_ID, set_id(r, set));
                });
            }
        }
    }
    for s in &rule.statements {
        match s {
            Statement::Counter(name) => b.expr("objref", |b| {
                b.u32(NFTA_OBJREF_IMM_TYPE, NFT_OBJECT_COUNTER);
                b.str(NFTA_OBJREF_IMM_NAME, name);
            }),
            Statement::Update(set, keys) => {
                load_keys(b, keys);
                b.expr("dynset", |b| {
                    b.str(NFTA_DYNSET_SET_NAME, set);
                    b.u32(NFTA_DYNSET_SET_ID, set_id(r, set));
                    b.u32(NFTA_DYNSET_OP, NFT_DYNSET_OP_UPDATE);
                    b.u32(NFTA_DYNSET_SREG_KEY, NFT_REG32_00);
                });
            }
            Statement::Masquerade => b.expr("masq", |_| {}),
            // No port register: the same port, on the loopback address.
            Statement::Redirect => b.expr("redir", |_| {}),
            Statement::Accept | Statement::Drop => {
                let code = if *s == Statement::Accept {
                    NF_ACCEPT
                } else {
                    NF_DROP
                };
                b.expr("immediate", |b| {
                    b.u32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
                    b.nest(NFTA_IMMEDIATE_DATA, |b| {
                        b.nest(NFTA_DATA_VERDICT, |b| b.u32(NFTA_VERDICT_CODE, code));
                    });
                });
            }
        }
    }
}

// ---- the socket ----

struct Socket(OwnedFd);

fn os(op: impl Into<String>, source: std::io::Error) -> Error {
    Error::Nftables {
        op: op.into(),
        source,
    }
}

fn setsockopt(
    fd: &OwnedFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: &impl Sized,
) -> std::io::Result<()> {
    // SAFETY: v points to a live value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (v as *const _) as *const libc::c_void,
            std::mem::size_of_val(v) as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Socket {
    fn open() -> Result<Socket> {
        // SAFETY: plain syscall; the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(os(
                "open a netfilter netlink socket",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: fd was just returned by socket(2) and is owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Errors echo only the header of the failed message, not a whole
        // element list; and the kernel's answer never takes longer than this.
        let _ = setsockopt(&fd, libc::SOL_NETLINK, NETLINK_CAP_ACK, &1i32);
        let timeout = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)
            .map_err(|e| os("set the netlink receive timeout", e))?;
        Ok(Socket(fd))
    }

    fn send(&self, buf: &[u8]) -> Result<()> {
        // One batch is one datagram: make room for it (FORCE needs
        // CAP_NET_ADMIN, which installing rules needs anyway).
        let want = (buf.len() + 4096) as i32;
        if setsockopt(&self.0, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &want).is_err() {
            let _ = setsockopt(&self.0, libc::SOL_SOCKET, libc::SO_SNDBUF, &want);
        }
        // SAFETY: sockaddr_nl is plain data; all-zero is the kernel as peer.
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: buf and `to` are valid for the lengths passed.
        let n = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                buf.as_ptr() as *const libc::c_void,
                buf.len(),
                0,
                (&to as *const libc::sockaddr_nl) as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(os("send to the kernel", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// The next datagram's messages: (type, flags, seq, payload).
    /// The messages of one datagram: type, sequence number, payload, and
    /// whether the kernel marked it NLM_F_DUMP_INTR (the dumped object
    /// changed meanwhile: the dump may repeat or miss entries).
    fn recv(&self, buf: &mut [u8]) -> Result<Vec<Received>> {
        // SAFETY: buf is valid for its length.
        let n = unsafe {
            libc::recv(
                self.0.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n < 0 {
            return Err(os(
                "receive the kernel's answer",
                std::io::Error::last_os_error(),
            ));
        }
        let mut out = Vec::new();
        let mut data = &buf[..n as usize];
        while data.len() >= 16 {
            let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
            if len < 16 || len > data.len() {
                break;
            }
            let ty = u16::from_ne_bytes(data[4..6].try_into().unwrap());
            let flags = u16::from_ne_bytes(data[6..8].try_into().unwrap());
            let seq = u32::from_ne_bytes(data[8..12].try_into().unwrap());
            let intr = flags & NLM_F_DUMP_INTR != 0;
            out.push((ty, seq, data[16..len].to_vec(), intr));
            data = &data[len.next_multiple_of(4).min(data.len())..];
        }
        Ok(out)
    }
}

/// The errno of an NLMSG_ERROR payload (0: an ack).
fn errno(payload: &[u8]) -> i32 {
    payload
        .get(0..4)
        .map_or(libc::EPROTO, |b| -i32::from_ne_bytes(b.try_into().unwrap()))
}

/// Sends a transaction whose messages 1..=n all ask for an ack, and waits
/// for every answer. The first error is reported with what its message did.
fn transact(sock: &Socket, buf: &[u8], what: &[String]) -> Result<()> {
    sock.send(buf)?;
    let mut rx = vec![0u8; 64 * 1024];
    let mut answered = 0;
    let mut first_err: Option<(u32, i32)> = None;
    while answered < what.len() {
        for (ty, seq, payload, _) in sock.recv(&mut rx)? {
            if ty != NLMSG_ERROR {
                continue;
            }
            answered += 1;
            let e = errno(&payload);
            if e != 0 && first_err.is_none_or(|(s, _)| seq < s) {
                first_err = Some((seq, e));
            }
            // A batch the kernel refused as a whole (seq 0: the begin
            // message) is answered once.
            if e != 0 && seq == 0 {
                answered = what.len();
            }
        }
    }
    match first_err {
        None => Ok(()),
        Some((seq, e)) => {
            let op = what
                .get((seq as usize).wrapping_sub(1))
                .cloned()
                .unwrap_or_else(|| "begin the transaction".into());
            Err(os(
                format!("{op} (nothing was installed)"),
                std::io::Error::from_raw_os_error(e),
            ))
        }
    }
}

/// A netfilter netlink socket in the network namespace of the thread that
/// opened it.
///
/// Closing it right after a transaction waits for the kernel to free the
/// transaction's old objects (an RCU grace period, milliseconds on a busy
/// machine): a caller that times the install, or has more to do, keeps
/// one open; the rules are in force as soon as [`Netlink::apply`] returns.
pub struct Netlink(Socket);

impl AsRawFd for Netlink {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.0.as_raw_fd()
    }
}

impl Netlink {
    pub fn open() -> Result<Netlink> {
        Socket::open().map(Netlink)
    }

    /// Installs `r`, replacing a previous table of the same name, in one
    /// transaction.
    pub fn apply(&self, r: &Ruleset) -> Result<()> {
        let (buf, what) = encode(r);
        transact(&self.0, &buf, &what)
    }

    /// Deletes the table; `Ok(false)` when there was none.
    pub fn delete(&self, table: &str) -> Result<bool> {
        delete_with(&self.0, table)
    }

    /// The table's named counters, by name.
    pub fn counters(&self, table: &str) -> Result<Vec<(String, Count)>> {
        counters_with(&self.0, table)
    }

    /// The elements of a dynamic `address . protocol . port` set with
    /// counters (`dropped4`, `dropped6`).
    pub fn dropped(&self, table: &str, set: &str) -> Result<Vec<Dropped>> {
        dropped_with(&self.0, table, set)
    }
}

/// An address to pin in a set with timeouts (the gatekeeper's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    pub set: &'static str,
    pub addr: IpAddr,
    pub timeout_ms: u64,
    /// The set may hold it already: delete and add it again, so that its
    /// timeout starts over (before Linux 6.12 adding an element that is
    /// there leaves its old timeout).
    pub replace: bool,
}

fn addr_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

impl Netlink {
    /// Adds `pins` to their sets in one transaction, and returns once the
    /// kernel has acknowledged every message: from then on packets to them
    /// match. All or nothing.
    pub fn pin(&self, table: &str, pins: &[Pin]) -> Result<()> {
        let mut b = Batch::new();
        let mut sets: Vec<&'static str> = pins.iter().map(|p| p.set).collect();
        sets.sort_unstable();
        sets.dedup();
        for set in sets {
            let of_set = || pins.iter().filter(move |p| p.set == set);
            let replaced: Vec<Elem> = of_set()
                .filter(|p| p.replace)
                .map(|p| Elem {
                    key: addr_bytes(p.addr),
                    key_end: None,
                    comment: None,
                    timeout_ms: None,
                })
                .collect();
            if !replaced.is_empty() {
                set_elements(&mut b, ElemOp::Delete, table, set, None, &replaced);
            }
            let added: Vec<Elem> = of_set()
                .map(|p| Elem {
                    key: addr_bytes(p.addr),
                    key_end: None,
                    comment: None,
                    timeout_ms: Some(p.timeout_ms.max(1)),
                })
                .collect();
            set_elements(&mut b, ElemOp::Add, table, set, None, &added);
        }
        let (buf, what) = b.finish();
        transact(&self.0, &buf, &what)
    }

    /// The addresses in a set with timeouts, and the milliseconds each has
    /// left.
    pub fn pinned(&self, table: &str, set: &str) -> Result<Vec<(IpAddr, u64)>> {
        set_dump(&self.0, table, set, |key, el| {
            Some((addr_of(key)?, be64(find(el, NFTA_SET_ELEM_EXPIRATION))))
        })
    }
}

impl Netlink {
    /// Lets a child close the socket after this process has exited. The
    /// last close of a socket that made a transaction waits for the kernel
    /// to free the old objects (an RCU grace period: 11-15 ms measured
    /// here, while the rules are already in force), and a process's exit
    /// closes its files before its parent learns it exited: whoever waits
    /// for this process would wait for that too. A child that holds the
    /// socket until we are gone takes the wait off the path. Best effort: if
    /// fork fails we simply pay it.
    pub fn close_later(self) {
        let parent = nix::unistd::getpid();
        // SAFETY: the child only calls async-signal-safe functions (close,
        // getppid, nanosleep, _exit).
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                // Hold no pipe of the caller open.
                for fd in 0..3 {
                    unsafe { libc::close(fd) };
                }
                // At most 1 s: then exit (and close) anyway.
                for _ in 0..2000 {
                    if nix::unistd::getppid() != parent {
                        break;
                    }
                    let ts = libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 500_000,
                    };
                    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
                }
                drop(self);
                unsafe { libc::_exit(0) };
            }
            _ => std::mem::forget(self),
        }
    }
}

/// [`Netlink::apply`] on a socket of its own.
pub fn apply(r: &Ruleset) -> Result<()> {
    Netlink::open()?.apply(r)
}

/// [`Netlink::delete`] on a socket of its own.
pub fn delete(table: &str) -> Result<bool> {
    Netlink::open()?.delete(table)
}

/// [`Netlink::counters`] on a socket of its own.
pub fn counters(table: &str) -> Result<Vec<(String, Count)>> {
    Netlink::open()?.counters(table)
}

/// [`Netlink::dropped`] on a socket of its own.
pub fn dropped(table: &str, set: &str) -> Result<Vec<Dropped>> {
    Netlink::open()?.dropped(table, set)
}

fn delete_with(sock: &Socket, table: &str) -> Result<bool> {
    let mut b = Batch::new();
    b.msg(
        format!("delete table inet {table}"),
        NFT_MSG_DELTABLE,
        ACKED,
        |b| b.str(NFTA_TABLE_NAME, table),
    );
    let (buf, what) = b.finish();
    match transact(sock, &buf, &what) {
        Ok(()) => Ok(true),
        Err(e) if is_enoent(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The kernel said "no such table/set/element".
fn is_enoent(e: &Error) -> bool {
    matches!(e, Error::Nftables { source, .. } if source.raw_os_error() == Some(libc::ENOENT))
}

/// Runs a dump request; returns the payloads of the answers (after the
/// nfgenmsg header).
fn dump(sock: &Socket, op: &str, msg: u16, f: impl FnOnce(&mut Buf)) -> Result<Vec<Vec<u8>>> {
    let mut b = Buf::default();
    b.msg(
        nft_type(msg),
        NLM_F_REQUEST | NLM_F_DUMP,
        1,
        NFPROTO_INET,
        0,
        f,
    );
    // A dump the kernel marks interrupted (a concurrent change to what it
    // lists) may hold an entry twice or miss one: it is asked again.
    for _ in 0..DUMP_TRIES {
        sock.send(&b.b)?;
        let mut rx = vec![0u8; 64 * 1024];
        let mut out = Vec::new();
        let mut interrupted = false;
        'read: loop {
            for (ty, _, payload, intr) in sock.recv(&mut rx)? {
                interrupted |= intr;
                match ty {
                    NLMSG_DONE => break 'read,
                    NLMSG_ERROR => {
                        let e = errno(&payload);
                        if e != 0 {
                            return Err(os(op, std::io::Error::from_raw_os_error(e)));
                        }
                    }
                    _ if payload.len() >= 4 => out.push(payload[4..].to_vec()),
                    _ => {}
                }
            }
        }
        if !interrupted {
            return Ok(out);
        }
    }
    Err(os(
        op,
        std::io::Error::other(format!(
            "the listing changed under every one of {DUMP_TRIES} tries (NLM_F_DUMP_INTR)"
        )),
    ))
}

/// Attributes of a message payload: (type without flags, data).
fn attrs(mut data: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let ty = u16::from_ne_bytes([data[2], data[3]]) & !NLA_F_NESTED & 0x3fff;
        if len < 4 || len > data.len() {
            break;
        }
        out.push((ty, &data[4..len]));
        data = &data[len.next_multiple_of(4).min(data.len())..];
    }
    out
}

fn find<'a>(a: &[(u16, &'a [u8])], ty: u16) -> Option<&'a [u8]> {
    a.iter().find(|(t, _)| *t == ty).map(|(_, d)| *d)
}

fn be64(d: Option<&[u8]>) -> u64 {
    d.and_then(|d| d.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

fn cstr(d: &[u8]) -> String {
    String::from_utf8_lossy(d.split(|b| *b == 0).next().unwrap_or(d)).into_owned()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

fn counter_data(d: &[u8]) -> Count {
    let a = attrs(d);
    Count {
        packets: be64(find(&a, NFTA_COUNTER_PACKETS)),
        bytes: be64(find(&a, NFTA_COUNTER_BYTES)),
    }
}

fn counters_with(sock: &Socket, table: &str) -> Result<Vec<(String, Count)>> {
    let msgs = dump(
        sock,
        &format!("read the counters of table inet {table}"),
        NFT_MSG_GETOBJ,
        |b| {
            b.str(NFTA_OBJ_TABLE, table);
            b.u32(NFTA_OBJ_TYPE, NFT_OBJECT_COUNTER);
        },
    )?;
    let mut out = Vec::new();
    for m in msgs {
        let a = attrs(&m);
        if let (Some(name), Some(data)) = (find(&a, NFTA_OBJ_NAME), find(&a, NFTA_OBJ_DATA)) {
            out.push((cstr(name), counter_data(data)));
        }
    }
    Ok(out)
}

/// One recorded dropped destination.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Dropped {
    pub addr: IpAddr,
    pub proto: u8,
    pub port: u16,
    pub packets: u64,
    pub bytes: u64,
    /// Milliseconds until the record expires, when the set has a timeout
    /// (each drop starts it over: the timeout minus this is how long ago
    /// the last one was).
    pub expires_ms: Option<u64>,
}

/// The elements of a set, each given to `f` as its key and its attributes;
/// what `f` returns is kept.
fn set_dump<T>(
    sock: &Socket,
    table: &str,
    set: &str,
    mut f: impl FnMut(&[u8], &[(u16, &[u8])]) -> Option<T>,
) -> Result<Vec<T>> {
    let msgs = dump(
        sock,
        &format!("read set {set} of table inet {table}"),
        NFT_MSG_GETSETELEM,
        |b| {
            b.str(NFTA_SET_ELEM_LIST_TABLE, table);
            b.str(NFTA_SET_ELEM_LIST_SET, set);
        },
    )?;
    let mut out = Vec::new();
    for m in msgs {
        let Some(list) = find(&attrs(&m), NFTA_SET_ELEM_LIST_ELEMENTS) else {
            continue;
        };
        for (_, el) in attrs(list) {
            let el = attrs(el);
            if let Some(key) =
                find(&el, NFTA_SET_ELEM_KEY).and_then(|k| find(&attrs(k), NFTA_DATA_VALUE))
            {
                out.extend(f(key, &el));
            }
        }
    }
    Ok(out)
}

/// An IPv4 or IPv6 address from its 4 or 16 bytes.
fn addr_of(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?).into()),
        16 => Some(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?).into()),
        _ => None,
    }
}

fn dropped_with(sock: &Socket, table: &str, set: &str) -> Result<Vec<Dropped>> {
    set_dump(sock, table, set, |key, el| {
        let addr_len = if key.len() == 12 { 4 } else { 16 };
        if key.len() != addr_len + 8 {
            return None;
        }
        let addr = addr_of(&key[..addr_len])?;
        // One counter: in NFTA_SET_ELEM_EXPR, or the first of the list.
        let count = find(el, NFTA_SET_ELEM_EXPR)
            .or_else(|| {
                find(el, NFTA_SET_ELEM_EXPRESSIONS).and_then(|l| attrs(l).first().map(|(_, d)| *d))
            })
            .and_then(|e| find(&attrs(e), NFTA_EXPR_DATA))
            .map(counter_data)
            .unwrap_or_default();
        Some(Dropped {
            addr,
            proto: key[addr_len],
            port: u16::from_be_bytes([key[addr_len + 4], key[addr_len + 5]]),
            packets: count.packets,
            bytes: count.bytes,
            expires_ms: find(el, NFTA_SET_ELEM_EXPIRATION).map(|d| be64(Some(d))),
        })
    })
}

/// The reference applier: the ruleset's nft text through `nft -f -`, with
/// the same replace-in-one-transaction semantics.
pub fn apply_with_nft(r: &Ruleset) -> Result<()> {
    let text = format!("table inet {t}\ndelete table inet {t}\n{r}", t = r.table);
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| os("run nft", e))?;
    let mut stdin = child.stdin.take().expect("piped");
    let written = stdin.write_all(text.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().map_err(|e| os("run nft", e))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let first = msg.lines().next().unwrap_or("").to_owned();
        return Err(os("nft -f", std::io::Error::other(first)));
    }
    written.map_err(|e| os("write to nft", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_aligned_and_nested() {
        let mut b = Buf::default();
        b.nest(9, |b| {
            b.str(1, "lo");
            b.u32(2, 0x0102_0304);
        });
        // nest header 4 + "lo\0" attr (7, padded to 8) + u32 attr 8.
        assert_eq!(b.b.len(), 20);
        assert_eq!(u16::from_ne_bytes([b.b[0], b.b[1]]), 20);
        assert_eq!(u16::from_ne_bytes([b.b[2], b.b[3]]), 9 | NLA_F_NESTED);
        assert_eq!(&b.b[16..20], &[1, 2, 3, 4]);
        let parsed = attrs(&b.b);
        assert_eq!(parsed.len(), 1);
        let inner = attrs(parsed[0].1);
        assert_eq!(cstr(find(&inner, 1).unwrap()), "lo");
    }

    #[test]
    fn concatenated_keys_are_padded_per_field() {
        let f = [Field::Ipv4Addr, Field::InetProto, Field::InetService];
        let key = key_bytes(&f, [0x0a00_0001, 6, 443].into_iter());
        assert_eq!(key, [10, 0, 0, 1, 6, 0, 0, 0, 0x01, 0xbb, 0, 0]);
    }

    /// (name, attributes) of each expression of a rule, as encoded.
    fn exprs(r: &Ruleset, rule: &crate::netpolicy::compile::Rule) -> Vec<(String, Vec<u8>)> {
        let mut b = Buf::default();
        rule_exprs(&mut b, r, rule);
        attrs(&b.b)
            .into_iter()
            .map(|(_, e)| {
                let a = attrs(e);
                let name = cstr(find(&a, NFTA_EXPR_NAME).unwrap());
                (name, find(&a, NFTA_EXPR_DATA).unwrap_or(&[]).to_vec())
            })
            .collect()
    }

    /// The compared bytes of each cmp expression.
    fn cmp_data(e: &[(String, Vec<u8>)]) -> Vec<Vec<u8>> {
        e.iter()
            .filter(|(n, _)| n == "cmp")
            .map(|(_, d)| {
                let v = find(&attrs(d), NFTA_CMP_DATA).unwrap();
                find(&attrs(v), NFTA_DATA_VALUE).unwrap().to_vec()
            })
            .collect()
    }

    #[test]
    fn interface_names_compare_whole_or_by_prefix() {
        let host = crate::netpolicy::host_ruleset();
        // forward rule 1: iifname "sbx-*" oifname "sbx-*": 4 bytes each.
        let e = exprs(&host, &host.chains[0].rules[0]);
        assert_eq!(cmp_data(&e), [b"sbx-".to_vec(), b"sbx-".to_vec()]);
        // The sandbox table's `oifname "lo"`: the name and its zero padding.
        let sbx = crate::netpolicy::compile(&Default::default()).unwrap();
        let e = exprs(&sbx, &sbx.chains[0].rules[0]);
        let mut lo = b"lo".to_vec();
        lo.resize(16, 0);
        assert_eq!(cmp_data(&e), [lo]);
    }

    #[test]
    fn an_interface_and_address_lookup_fills_five_registers() {
        let host = crate::netpolicy::host_ruleset();
        // iifname . ip saddr @links4: nfproto ipv4, then iifname into
        // registers 8-11 and the address into 12.
        let e = exprs(&host, &host.chains[0].rules[1]);
        let names: Vec<&str> = e.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["meta", "cmp", "meta", "payload", "lookup", "immediate"]
        );
        assert_eq!(cmp_data(&e), [vec![NFPROTO_IPV4]]);
        let payload = attrs(&e[3].1);
        let be32 = |ty| u32::from_be_bytes(find(&payload, ty).unwrap().try_into().unwrap());
        assert_eq!(be32(NFTA_PAYLOAD_DREG), NFT_REG32_00 + 4);
        assert_eq!(be32(NFTA_PAYLOAD_OFFSET), 12);
        // The postrouting rules end in masq.
        let e = exprs(&host, &host.chains[2].rules[1]);
        assert_eq!(e.last().unwrap().0, "masq");
        assert_eq!(cmp_data(&e), [vec![NFPROTO_IPV6]]);
    }

    #[test]
    fn element_comments_are_nft_userdata() {
        let u = comment_udata("sandbox-1");
        assert_eq!(&u[..2], &[NFTNL_UDATA_SET_ELEM_COMMENT, 10]);
        assert_eq!(&u[2..], b"sandbox-1\0");
        assert_eq!(udata_comment(&u).as_deref(), Some("sandbox-1"));
        // Another TLV first, then the comment; a truncated one is no comment.
        let mut two = vec![7, 2, 0xaa, 0xbb];
        two.extend(&u);
        assert_eq!(udata_comment(&two).as_deref(), Some("sandbox-1"));
        assert_eq!(udata_comment(&u[..5]), None);
    }

    #[test]
    fn long_element_lists_are_split_into_messages() {
        let elements: Vec<Elem> = (0..10_000u32)
            .map(|i| Elem {
                key: i.to_be_bytes().to_vec(),
                key_end: None,
                comment: Some("an owner".into()),
                timeout_ms: None,
            })
            .collect();
        let mut b = Batch::new();
        set_elements(&mut b, ElemOp::Add, "t", "s", None, &elements);
        let (buf, what) = b.finish();
        assert!(what.len() > 1, "{}", what.len());
        let mut data = &buf[..];
        while !data.is_empty() {
            let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
            assert!(len <= 60_100, "{len}");
            data = &data[len..];
        }
    }

    #[test]
    fn every_message_but_begin_and_end_is_acked() {
        let r = crate::netpolicy::compile(&Default::default()).unwrap();
        let (buf, what) = encode(&r);
        let mut seqs = Vec::new();
        let mut data = &buf[..];
        while !data.is_empty() {
            let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
            let flags = u16::from_ne_bytes(data[6..8].try_into().unwrap());
            seqs.push((
                u32::from_ne_bytes(data[8..12].try_into().unwrap()),
                flags & NLM_F_ACK != 0,
            ));
            data = &data[len..];
        }
        assert_eq!(seqs.len(), what.len() + 2);
        assert_eq!(seqs[0], (0, false));
        assert_eq!(*seqs.last().unwrap(), (what.len() as u32 + 1, false));
        for (i, (seq, ack)) in seqs[1..seqs.len() - 1].iter().enumerate() {
            assert_eq!((*seq, *ack), (i as u32 + 1, true));
        }
    }
}

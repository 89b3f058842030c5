//! runc's console-socket protocol: the container's init makes a terminal
//! and sends its master end over a Unix socket as SCM_RIGHTS. Both ends of
//! it here receive it (`sandbox exec -t` and the API's terminals).

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

/// The first descriptor of the next message on the connected socket `conn`
/// (`None`: a message without one); any other descriptor in it is closed.
/// `nonblocking`: EWOULDBLOCK rather than a wait when nothing has come.
pub fn receive_fd(conn: RawFd, nonblocking: bool) -> std::io::Result<Option<OwnedFd>> {
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
    if nonblocking {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let msg = recvmsg::<()>(conn, &mut iov, Some(&mut space), flags)?;
    let mut first = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for raw in fds {
                // SAFETY: a descriptor just received, owned by nobody else.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                if first.is_none() {
                    first = Some(owned);
                }
            }
        }
    }
    Ok(first)
}

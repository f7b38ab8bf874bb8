//! Descriptors passed from one process to another over a Unix socket (`SCM_RIGHTS`): how a
//! binary upgrade hands its listening sockets to the new process. The receiver gets its
//! own descriptors for the same open sockets, as after a `dup`.
//!
//! std's ancillary-data API is not stable, hence `sendmsg`/`recvmsg` through libc here, in
//! the one place that needs them.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Most descriptors one message carries (the kernel takes up to `SCM_MAX_FD`, 253).
pub const MAX_PER_MESSAGE: usize = 128;

/// Room for one `SCM_RIGHTS` header and `MAX_PER_MESSAGE` descriptors, in `u64`s: a
/// `cmsghdr` must be aligned as a `size_t`.
const CONTROL_WORDS: usize = (MAX_PER_MESSAGE * size_of::<RawFd>() + 64) / size_of::<u64>();

/// Sends `data` as one message, with `fds` (at most `MAX_PER_MESSAGE`) attached.
pub fn send(socket: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_PER_MESSAGE {
        return Err(io::Error::other("too many descriptors for one message"));
    }
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let payload = (raw.len() * size_of::<RawFd>()) as u32;
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !raw.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is arithmetic; it fits `control` (CONTROL_WORDS has room for
        // MAX_PER_MESSAGE descriptors and the header).
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(payload) } as _;
        // SAFETY: msg_control points at `control`, large and aligned enough for one header
        // and `payload` bytes of data, which are all this writes.
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&msg);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(payload) as _;
            std::ptr::copy_nonoverlapping(
                raw.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(header),
                payload as usize,
            );
        }
    }
    loop {
        // SAFETY: `msg` points at `iov`, `data` and `control`, all alive for the call; the
        // kernel only reads them.
        let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if sent >= 0 {
            return if sent as usize == data.len() {
                Ok(())
            } else {
                Err(io::Error::other("message cut short"))
            };
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Receives one message into `buf`: its length (0: the peer closed) and the descriptors
/// attached to it, close-on-exec. A message or descriptor list that did not fit is an
/// error (the descriptors that came are closed).
pub fn recv(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control) as _;
    let received = loop {
        // SAFETY: `msg` points at `iov` (over `buf`) and `control`, alive and writable for
        // the call; the kernel writes at most their lengths.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    };
    let fds = attached(&msg);
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other(
            "descriptors cut off (too many in one message)",
        ));
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(io::Error::other("message cut off (too long)"));
    }
    Ok((received, fds))
}

/// The descriptors in `msg`'s `SCM_RIGHTS` headers, each owned from here on.
fn attached(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: `msg` was filled by recvmsg: its control headers are the kernel's, each
    // within msg_controllen, and CMSG_NXTHDR stops at the end. An SCM_RIGHTS header's data
    // is cmsg_len - CMSG_LEN(0) bytes of descriptors, read unaligned; each was just
    // installed in this process for us, so nothing else owns it.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(msg);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(header).cast::<RawFd>();
                let bytes = (*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            header = libc::CMSG_NXTHDR(msg, header);
        }
    }
    fds
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Socket, Type};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    #[test]
    fn a_listening_socket_sent_is_the_same_socket_received() {
        let (a, b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        send(a.as_fd(), b"two", &[listener.as_fd(), other.as_fd()]).unwrap();
        drop(listener);
        let mut buf = [0u8; 16];
        let (n, mut fds) = recv(b.as_fd(), &mut buf).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"two"[..], 2));
        let received = TcpListener::from(fds.remove(0));
        assert_eq!(received.local_addr().unwrap(), addr);
        // The original descriptor is closed: the socket lives on in the received one.
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(b"x").unwrap();
        let (mut accepted, _) = received.accept().unwrap();
        let mut byte = [0u8];
        accepted.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
        // Received descriptors are close-on-exec.
        let flags = unsafe { libc::fcntl(received.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }

    #[test]
    fn a_message_without_descriptors_and_the_peers_close() {
        let (a, b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap();
        send(a.as_fd(), b"ready", &[]).unwrap();
        drop(a);
        let mut buf = [0u8; 16];
        let (n, fds) = recv(b.as_fd(), &mut buf).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"ready"[..], 0));
        assert_eq!(
            recv(b.as_fd(), &mut buf).unwrap().0,
            0,
            "EOF after the close"
        );
    }

    #[test]
    fn too_long_a_message_is_an_error_not_a_cut() {
        let (a, b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap();
        send(a.as_fd(), &[b'x'; 100], &[]).unwrap();
        let mut small = [0u8; 10];
        assert!(recv(b.as_fd(), &mut small).is_err());
    }
}

//! After `101 Switching Protocols` (WebSocket and other upgrades), the connection is no
//! longer HTTP: bytes are relayed both ways until each side has closed. Either side may be
//! TLS (a TLS listener, a group with `[upstream.NAME.tls]`): its stream is split like a socket.

use monoio::io::{AsyncReadRent, AsyncWriteRent, Split, Splitable};

use super::buffer::RecvBuf;
use super::facts::ClientBytes;
use super::io::{Timed, copy_until_eof};
use crate::conns::{ConnSlot, Deadline, Lane};
use crate::upstream::BackendStream;
use std::time::Duration;

/// The (read, write) deadlines of each direction; the two directions wait independently, but
/// bytes moving either way keep both alive: a tunnel is idle only when nothing moves at all
/// (a server pushing to a silent client must not be cut off).
pub struct Lanes<'a> {
    pub client_to_backend: (Deadline<'a>, Deadline<'a>),
    pub backend_to_client: (Deadline<'a>, Deadline<'a>),
    pub slot: &'a ConnSlot,
    pub idle: Duration,
    pub client_bytes: ClientBytes<'a>,
}

/// Relays between `client` and `backend`. `from_client` / `from_backend` hold bytes already
/// received from each side past the HTTP exchange; they are delivered first.
pub async fn run<S>(
    client: S,
    backend: BackendStream,
    from_client: RecvBuf,
    from_backend: RecvBuf,
    lanes: Lanes<'_>,
) where
    S: AsyncReadRent + AsyncWriteRent + Split,
{
    let (mut client_read, mut client_write) = client.into_split();
    let (mut backend_read, mut backend_write) = backend.into_split();
    let (up_read, up_write) = lanes.client_to_backend;
    let (down_read, down_write) = lanes.backend_to_client;
    let (slot, idle, client_bytes) = (lanes.slot, lanes.idle, lanes.client_bytes);
    let upstream = copy_until_eof(
        Timed {
            stream: &mut client_read,
            deadline: up_read,
            floor: None,
        },
        Timed {
            stream: &mut backend_write,
            deadline: up_write,
            floor: None,
        },
        from_client,
        |moved| {
            slot.extend(Lane::Second, idle);
            client_bytes.received(moved as u64);
        },
    );
    let downstream = copy_until_eof(
        Timed {
            stream: &mut backend_read,
            deadline: down_read,
            floor: None,
        },
        Timed {
            stream: &mut client_write,
            deadline: down_write,
            floor: None,
        },
        from_backend,
        |moved| {
            slot.extend(Lane::Main, idle);
            client_bytes.sent(moved as u64);
        },
    );
    monoio::join!(upstream, downstream);
}

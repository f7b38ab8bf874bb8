//! After `101 Switching Protocols` (WebSocket and other upgrades), the connection is no
//! longer HTTP: bytes are relayed both ways until each side has closed.

use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, Split, Splitable};
use monoio::net::TcpStream;

use super::buffer::RecvBuf;
use super::io::copy_until_eof;

/// Relays between `client` and `backend`. `from_client` / `from_backend` hold bytes already
/// received from each side past the HTTP exchange; they are delivered first.
pub async fn run<S>(
    client: S,
    backend: TcpStream,
    from_client: RecvBuf,
    from_backend: RecvBuf,
    idle: Duration,
) where
    S: AsyncReadRent + AsyncWriteRent + Split,
{
    let (mut client_read, mut client_write) = client.into_split();
    let (mut backend_read, mut backend_write) = backend.into_split();
    let upstream = copy_until_eof(&mut client_read, &mut backend_write, from_client, idle);
    let downstream = copy_until_eof(&mut backend_read, &mut client_write, from_backend, idle);
    monoio::join!(upstream, downstream);
}

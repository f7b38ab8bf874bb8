//! From an accepted socket on a TLS listener to `proxy::serve_connection`.
//!
//! The client's first bytes decide: a TLS handshake record goes on to the handshake; an
//! ASCII capital letter is plain HTTP sent to the TLS port, answered with a `400` in clear
//! text (as nginx does) before the connection closes; anything else closes at once. The
//! first read and the whole handshake share one bound, `timeouts.client_header` from accept
//! (the first request head then has its own, as on a plain listener), so a client that stalls
//! mid-handshake holds nothing past it. A failed handshake closes the connection after the
//! alert rustls chose (an unsupported version, no common cipher suite).
//!
//! Each connection counts once in the worker's metrics: a completed handshake by kind (full
//! or resumed), else why it failed (`TlsFailure`).

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::{HandshakeKind, PeerIncompatible, ServerConfig, ServerConnection};

use super::stream::{First, TlsStream};
use crate::conns::{ConnSlot, Cut, Lane};
use crate::http::write_error_response;
use crate::metrics::{TlsFailure, TlsHandshake};
use crate::proxy;
use crate::worker::{Generation, WorkerCtx};

/// After the `400` to a plain-HTTP client, how long (and how much) what it still sends is
/// read and dropped, so that the close is a FIN behind the answer rather than a reset.
const PLAIN_HTTP_LINGER: Duration = Duration::from_secs(1);
const PLAIN_HTTP_LINGER_BYTES: usize = 64 * 1024;

/// Serves one connection accepted on the TLS listener `listener` of the worker.
#[allow(clippy::too_many_arguments)]
pub async fn serve_tls(
    ctx: Rc<WorkerCtx>,
    generation: Rc<Generation>,
    tcp: TcpStream,
    fd: RawFd,
    peer: SocketAddr,
    listener: usize,
    slot: ConnSlot,
    config: Arc<ServerConfig>,
) {
    let conn = match ServerConnection::new(config) {
        Ok(conn) => conn,
        // Only a configuration rustls rejects fails here; the start-up built one already.
        Err(_) => return drop_in_order(slot, tcp),
    };
    let mut stream = TlsStream::new(tcp, conn);
    let within = generation.config.timeouts.client_header;
    let deadline = slot.deadline(Lane::Main, fd, within);
    let (opened, timed_out) = deadline.run(Cut::Both, open(&mut stream)).await;
    if let Ok(First::Handshake) = opened {
        let kind = if stream.handshake_kind() == Some(HandshakeKind::Resumed) {
            TlsHandshake::Resumed
        } else {
            TlsHandshake::Full
        };
        ctx.metrics.tls_handshake(kind);
        proxy::serve_connection(ctx, generation, stream, fd, peer, listener, slot).await;
        return;
    }
    ctx.metrics.tls_failure(failure(&opened, timed_out));
    if let Ok(First::PlainHttp) = opened {
        let mut tcp = stream.into_tcp();
        refuse_plain_http(&ctx, &slot, fd, &mut tcp).await;
        return drop_in_order(slot, tcp);
    }
    drop_in_order(slot, stream);
}

/// Why a connection that did not complete its handshake failed. A deadline that fired
/// explains whatever the cut socket then reported.
fn failure(opened: &std::io::Result<First>, timed_out: bool) -> TlsFailure {
    if timed_out {
        return TlsFailure::Timeout;
    }
    match opened {
        Ok(First::PlainHttp) => TlsFailure::PlainHttp,
        Ok(First::Other) => TlsFailure::Protocol,
        Ok(First::Closed) => TlsFailure::Closed,
        // Not reached: a completed handshake is counted by the caller.
        Ok(First::Handshake) => TlsFailure::Other,
        Err(error) => match error.get_ref().and_then(|e| e.downcast_ref()) {
            Some(tls) => tls_failure(tls),
            None => socket_failure(error.kind()),
        },
    }
}

/// The failure an error of the socket (or of the stream's own end-of-stream check) stands
/// for.
fn socket_failure(kind: std::io::ErrorKind) -> TlsFailure {
    use std::io::ErrorKind;
    match kind {
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => TlsFailure::Closed,
        _ => TlsFailure::Other,
    }
}

/// rustls' error when the certificate resolver has none for the client (`strict_sni` and a
/// name no certificate has). Only its message tells it apart; a test pins it.
const NO_CERTIFICATE_RESOLVED: &str = "no server certificate chain resolved";

/// The failure a rustls error stands for.
fn tls_failure(error: &rustls::Error) -> TlsFailure {
    use rustls::Error;
    match error {
        Error::PeerIncompatible(PeerIncompatible::NoSignatureSchemesInCommon) => {
            TlsFailure::NoCertificate
        }
        Error::General(message) if message == NO_CERTIFICATE_RESOLVED => TlsFailure::NoCertificate,
        Error::PeerIncompatible(_) | Error::NoApplicationProtocol => TlsFailure::Incompatible,
        Error::AlertReceived(_) => TlsFailure::ClientAlert,
        Error::InvalidMessage(_)
        | Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. }
        | Error::PeerMisbehaved(_)
        | Error::DecryptError => TlsFailure::Protocol,
        _ => TlsFailure::Other,
    }
}

/// Reads the first bytes and, for a TLS client, completes the handshake.
async fn open(stream: &mut TlsStream) -> std::io::Result<First> {
    let first = stream.read_first().await?;
    if first == First::Handshake {
        stream.handshake().await?;
    }
    Ok(first)
}

/// `400 Bad Request` in clear text, then FIN, then what the client still sends is read and
/// dropped for a moment so that the close does not reset the answer away.
async fn refuse_plain_http(ctx: &WorkerCtx, slot: &ConnSlot, fd: RawFd, tcp: &mut TcpStream) {
    let mut answer = Vec::with_capacity(128);
    write_error_response(&mut answer, 400, true);
    let end = ctx.conns.now() + PLAIN_HTTP_LINGER;
    let deadline = slot.deadline(Lane::Main, fd, PLAIN_HTTP_LINGER);
    // A boxed slice: `write_all` over a `Vec` is the plain-HTTP path's, kept to one caller
    // so that it stays inlined there (see `TlsStream::flush_tls`).
    let answer = answer.into_boxed_slice();
    let ((written, _), _) = deadline.run(Cut::Both, tcp.write_all(answer)).await;
    if written.is_err() || tcp.shutdown().await.is_err() {
        return;
    }
    let mut buf = Vec::with_capacity(4096);
    let mut dropped = 0;
    while dropped < PLAIN_HTTP_LINGER_BYTES {
        buf.clear();
        let left = end.saturating_duration_since(ctx.conns.now());
        let deadline = slot.deadline(Lane::Main, fd, left);
        let ((read, back), _) = deadline.run(Cut::Both, tcp.read(buf)).await;
        buf = back;
        match read {
            Ok(n) if n > 0 => dropped += n,
            _ => break,
        }
    }
}

/// Unregisters the connection before its socket closes, so a reused fd number is never
/// shut by a stale entry.
fn drop_in_order<S>(slot: ConnSlot, socket: S) {
    drop(slot);
    drop(socket);
}

//! Opening a new backend connection within the connect timeout: TCP, then for a backend of a
//! group with `[upstream.NAME.tls]` the TLS handshake, both within the one timeout.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use super::stream::{BackendStream, TlsBackend};
use super::{Backend, BackendTls};
use crate::fdlimit::is_out_of_files;
use crate::tls::TlsStream;

#[derive(Debug)]
pub enum ConnectError {
    Timeout,
    /// This process is out of file descriptors: our shortage, not the backend's fault.
    OutOfFiles,
    Failed(io::Error),
    /// The TLS handshake failed (already logged): the backend's certificate is not trusted,
    /// it wants a client certificate, it does not speak TLS...
    Handshake(io::Error),
}

/// A connection to `backend`, TLS included when its group has it.
pub async fn connect(backend: &Backend, within: Duration) -> Result<BackendStream, ConnectError> {
    match &backend.tls {
        None => match monoio::time::timeout(within, open_tcp(backend.addr)).await {
            Ok(opened) => opened.map(BackendStream::Plain),
            Err(_elapsed) => Err(ConnectError::Timeout),
        },
        // Boxed: the handshake's state is not carried in the plain connect's.
        Some(tls) => {
            let opening = Box::pin(connect_tls(backend.addr, tls));
            match monoio::time::timeout(within, opening).await {
                Ok(opened) => opened,
                Err(_elapsed) => Err(ConnectError::Timeout),
            }
        }
    }
}

async fn open_tcp(addr: SocketAddr) -> Result<TcpStream, ConnectError> {
    let stream = TcpStream::connect_addr(addr).await.map_err(|e| {
        if is_out_of_files(&e) {
            ConnectError::OutOfFiles
        } else {
            ConnectError::Failed(e)
        }
    })?;
    // Heads and small bodies go out in one write each; Nagle would only delay them.
    stream.set_nodelay(true).map_err(ConnectError::Failed)?;
    Ok(stream)
}

/// TCP and the handshake, without a timeout of their own (the caller bounds both together).
async fn connect_tls(addr: SocketAddr, tls: &BackendTls) -> Result<BackendStream, ConnectError> {
    let tcp = open_tcp(addr).await?;
    let stream = handshake(tcp, tls.config.clone(), tls.name.clone())
        .await
        .map_err(|error| {
            tls.log.failed("TLS handshake failed", &error);
            ConnectError::Handshake(error)
        })?;
    Ok(BackendStream::Tls(Box::new(TlsBackend {
        stream,
        identity: tls.identity,
        log: tls.log.clone(),
    })))
}

/// Takes `tcp` through the client side of a TLS handshake with a backend that must prove to
/// be `name`.
pub async fn handshake(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
) -> io::Result<TlsStream<ClientConnection>> {
    let conn = ClientConnection::new(config, name)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    let mut stream = TlsStream::new(tcp, conn);
    stream.handshake().await?;
    Ok(stream)
}

//! Opening a new backend connection within the connect timeout.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use monoio::net::TcpStream;

use crate::fdlimit::is_out_of_files;

#[derive(Debug)]
pub enum ConnectError {
    Timeout,
    /// This process is out of file descriptors: our shortage, not the backend's fault.
    OutOfFiles,
    Failed(io::Error),
}

pub async fn connect(addr: SocketAddr, within: Duration) -> Result<TcpStream, ConnectError> {
    let stream = match monoio::time::timeout(within, TcpStream::connect_addr(addr)).await {
        Err(_elapsed) => return Err(ConnectError::Timeout),
        Ok(Err(e)) if is_out_of_files(&e) => return Err(ConnectError::OutOfFiles),
        Ok(Err(e)) => return Err(ConnectError::Failed(e)),
        Ok(Ok(stream)) => stream,
    };
    // Heads and small bodies go out in one write each; Nagle would only delay them.
    stream.set_nodelay(true).map_err(ConnectError::Failed)?;
    Ok(stream)
}

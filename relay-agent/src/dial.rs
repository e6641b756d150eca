//! Dialling an exposed target, with a deadline and failures mapped to the
//! protocol's error codes and a message that names the target.

use std::time::Duration;

use proto::{ErrorCode, Refused, TargetName};
use tokio::net::TcpStream;

/// Connects to `addr` (target `name`); a refusal to send back on failure.
///
/// # Errors
/// `TARGET_TIMEOUT`, `TARGET_REFUSED` or `TARGET_UNREACHABLE` with a message.
pub async fn dial(name: &TargetName, addr: &str, timeout: Duration) -> Result<TcpStream, Refused> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Err(_) => Err(Refused::new(
            ErrorCode::TARGET_TIMEOUT,
            format!("target {name} ({addr}) did not answer within {timeout:?}"),
        )),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(Refused::new(
            ErrorCode::TARGET_REFUSED,
            format!("target {name} ({addr}) refused the connection"),
        )),
        Ok(Err(e)) => Err(Refused::new(
            ErrorCode::TARGET_UNREACHABLE,
            format!("target {name} ({addr}) unreachable: {e}"),
        )),
    }
}

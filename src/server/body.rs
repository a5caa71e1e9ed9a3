//! Reading a review's body inside the webhook's memory budget.
//!
//! A request that sends its headers and then nothing holds nothing. Bodies that declare a small
//! size (every review the API server sends in practice) draw from a pool of their own, byte by byte
//! as they arrive, waiting for room if they must: to keep a small review waiting, a client must
//! really send megabytes, and cannot do it with large or slow bodies at all. A large body takes its
//! whole declared size (or, undeclared, each chunk) from the other pool when its bytes arrive, or
//! is answered 503 at once when the pool has no room: a stream that waited unread would hold its
//! HTTP/2 connection's flow-control window, and with it every other stream of that connection. A
//! body that cannot be read within [`BODY_TIMEOUT`] is dropped and its bytes returned. The buffer
//! may grow to twice the bytes counted while it fills (it doubles).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The largest body accepted: a review carries the object and the old object, each at most the
/// 1.5 MiB etcd stores, plus the envelope.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// How long a client may take to send the body once the headers are in (the header timeout is the
/// server's). The API server sends a review in one write; 10 s is its default webhook timeout.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Bodies that declare at most this many bytes draw from [`SMALL_POOL_BYTES`]: a Service review is
/// a few KB (3.7 KB for one `kubectl apply` wrote, managedFields and all).
pub const SMALL_BODY_BYTES: usize = 64 * 1024;

/// All small bodies being received at once, together.
pub const SMALL_POOL_BYTES: usize = 4 * 1024 * 1024;

/// All other bodies being received at once, together: seven maximum-size reviews.
pub const LARGE_POOL_BYTES: usize = 28 * 1024 * 1024;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Over [`MAX_BODY_BYTES`], declared or sent.
    #[error("request body over the {MAX_BODY_BYTES}-byte limit")]
    TooLarge,
    /// Not complete within [`BODY_TIMEOUT`] (slow, or waiting for room in the budget).
    #[error("request body not received within {}s", BODY_TIMEOUT.as_secs())]
    TimedOut,
    /// The client reset the stream or closed the connection.
    #[error("request body cut off: {0}")]
    Cancelled(#[source] axum::Error),
    /// A large body, and no room for it in the budget now.
    #[error("no room for a body of this size now; retry")]
    Busy,
}

/// A complete body and its share of the budget, returned when both are dropped.
#[derive(Debug)]
pub struct Received {
    /// The body.
    pub bytes: Bytes,
    _held: Option<OwnedSemaphorePermit>,
}

/// The two pools bodies are counted against.
#[derive(Clone, Debug)]
pub struct Budget {
    small: Arc<Semaphore>,
    large: Arc<Semaphore>,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            small: Arc::new(Semaphore::new(SMALL_POOL_BYTES)),
            large: Arc::new(Semaphore::new(LARGE_POOL_BYTES)),
        }
    }
}

impl Budget {
    /// Reads `body`, which declared `declared` bytes (`Content-Length`), within the budget and
    /// [`BODY_TIMEOUT`].
    pub async fn read(&self, body: Body, declared: Option<u64>) -> Result<Received, BodyError> {
        let limit = match declared {
            Some(n) if n > MAX_BODY_BYTES as u64 => return Err(BodyError::TooLarge),
            // A body may not grow past what it declared: it would draw from the wrong pool.
            Some(n) => n as usize,
            None => MAX_BODY_BYTES,
        };
        let read = if limit <= SMALL_BODY_BYTES {
            read(body, &self.small, limit, Take::WaitingAsItArrives)
        } else if declared.is_some() {
            read(body, &self.large, limit, Take::Declared)
        } else {
            read(body, &self.large, limit, Take::AsItArrives)
        };
        tokio::time::timeout(BODY_TIMEOUT, read)
            .await
            .unwrap_or(Err(BodyError::TimedOut))
    }
}

/// How a body's bytes are taken from its pool.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Take {
    /// All the declared bytes, with the first data, or [`BodyError::Busy`].
    Declared,
    /// Each chunk's bytes, as it arrives, or [`BodyError::Busy`].
    AsItArrives,
    /// Each chunk's bytes, as it arrives, waiting for room.
    WaitingAsItArrives,
}

async fn read(
    mut body: Body,
    pool: &Arc<Semaphore>,
    limit: usize,
    take: Take,
) -> Result<Received, BodyError> {
    let mut bytes = BytesMut::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyError::Cancelled)?.into_data() else {
            continue; // trailers
        };
        if bytes.len() + data.len() > limit {
            return Err(BodyError::TooLarge);
        }
        let n = match take {
            Take::Declared if held.is_some() => 0,
            Take::Declared => limit,
            Take::AsItArrives | Take::WaitingAsItArrives => data.len(),
        };
        // At most MAX_BODY_BYTES, so the count fits a u32.
        let n = u32::try_from(n).map_err(|_| BodyError::TooLarge)?;
        let pool = Arc::clone(pool);
        let permit = match take {
            Take::WaitingAsItArrives => pool.acquire_many_owned(n).await.ok(),
            Take::Declared | Take::AsItArrives => pool.try_acquire_many_owned(n).ok(),
        }
        .ok_or(BodyError::Busy)?;
        match held.as_mut() {
            Some(held) => held.merge(permit),
            None => held = Some(permit),
        }
        bytes.extend_from_slice(&data);
    }
    Ok(Received {
        bytes: bytes.freeze(),
        _held: held,
    })
}

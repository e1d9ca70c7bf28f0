//! Reading an origin body the cache will keep: bounded in size, in memory shared by all
//! fills, and in time; teed to the first viewer as it arrives.

use bytes::Bytes;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a streaming miss waits for its first viewer to take a frame before going on
/// without that viewer, for the others.
const VIEWER_STALL: Duration = Duration::from_secs(30);

/// Why a body could not be kept.
#[derive(Debug)]
pub(crate) enum Collect {
    TooLarge,
    /// The fills in flight already hold all the memory they may.
    NoRoom,
    /// No viewer wants it any more.
    Abandoned,
    Failed(String),
}

impl std::fmt::Display for Collect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Collect::TooLarge => f.write_str("larger than the largest object the cache keeps"),
            Collect::NoRoom => f.write_str("no memory left for fills in flight"),
            Collect::Abandoned => f.write_str("every viewer left"),
            Collect::Failed(e) => f.write_str(e),
        }
    }
}

pub(crate) type Tee =
    tokio::sync::mpsc::Sender<Result<hyper::body::Frame<Bytes>, meridian_http::BoxError>>;

/// Reads an origin body to keep, within bounds: at most `limit` bytes, reserved from
/// `budget` as they arrive; giving up when the origin sends nothing for `idle`, or when
/// `abandoned` says no one waits any more. Every frame also goes to `tee` (the first
/// viewer, streamed to), at that viewer's pace; past the limit the rest still goes there
/// but is not kept.
pub(crate) struct Collector<'a> {
    pub limit: usize,
    pub idle: Duration,
    pub tee: Option<Tee>,
    pub budget: Option<Arc<Semaphore>>,
    pub abandoned: Option<Box<dyn Fn() -> bool + Send + Sync + 'a>>,
}

impl<'a> Collector<'a> {
    pub fn new(limit: usize, idle: Duration) -> Self {
        Collector {
            limit,
            idle,
            tee: None,
            budget: None,
            abandoned: None,
        }
    }

    pub async fn collect(
        mut self,
        mut body: meridian_http::Body,
    ) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Collect> {
        let mut buf = bytes::BytesMut::new();
        let mut reserved: Option<OwnedSemaphorePermit> = None;
        // Why the body is not being kept, once it is not (the tee may still want it).
        let mut dropped: Option<Collect> = None;
        loop {
            let frame = match tokio::time::timeout(self.idle, body.frame()).await {
                Err(_) => {
                    let e = format!(
                        "no data for {}",
                        meridian_config::units::format_duration(self.idle)
                    );
                    if let Some(t) = &self.tee {
                        let _ = t.try_send(Err(e.clone().into()));
                    }
                    return Err(Collect::Failed(e));
                }
                Ok(None) => match dropped {
                    Some(why) => return Err(why),
                    None => return Ok((buf.freeze(), reserved)),
                },
                Ok(Some(Err(e))) => {
                    if let Some(t) = &self.tee {
                        let _ = t.try_send(Err(e.to_string().into()));
                    }
                    return Err(Collect::Failed(e.to_string()));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if let Some(t) = &self.tee {
                let sent = tokio::time::timeout(
                    VIEWER_STALL,
                    t.send(Ok(hyper::body::Frame::data(data.clone()))),
                )
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    // The viewer left or stopped reading; the fill goes on for the others.
                    self.tee = None;
                }
            }
            if self.tee.is_none() && self.abandoned.as_ref().is_some_and(|f| f()) {
                return Err(Collect::Abandoned);
            }
            if dropped.is_none() {
                dropped = self.keep(&mut buf, &mut reserved, &data).err();
                if dropped.is_some() {
                    buf = bytes::BytesMut::new();
                    reserved = None;
                }
            }
            if self.tee.is_none() {
                if let Some(why) = dropped {
                    return Err(why);
                }
            }
        }
    }

    /// Adds `data` to what is kept, within the limit and the budget.
    fn keep(
        &self,
        buf: &mut bytes::BytesMut,
        reserved: &mut Option<OwnedSemaphorePermit>,
        data: &Bytes,
    ) -> Result<(), Collect> {
        if buf.len() + data.len() > self.limit {
            return Err(Collect::TooLarge);
        }
        if let Some(budget) = &self.budget {
            let n = u32::try_from(data.len()).map_err(|_| Collect::TooLarge)?;
            let more = budget
                .clone()
                .try_acquire_many_owned(n)
                .map_err(|_| Collect::NoRoom)?;
            match reserved {
                Some(r) => r.merge(more),
                None => *reserved = Some(more),
            }
        }
        buf.extend_from_slice(data);
        Ok(())
    }
}

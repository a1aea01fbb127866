//! The calling side: upstream's `Channel`, one per remote service or group of servers.
//! Every call shape goes through one streamed exchange, as it does on the wire: requests
//! flow from a bounded queue the caller fills, answers into a bounded queue the caller
//! drains, so a slow side holds the other back instead of buffering without limit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use slim_datapath::api::ProtoName;
use slim_rpc::Channel;
use tokio::sync::{OnceCell, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::errors::{Code, Error, Result};
use crate::link::{Link, closed_as_app};
use crate::rpc::check_size;
use crate::status::RpcCode;
use crate::wait::Limit;

/// Requests a caller may queue ahead of the network before `send` waits.
const REQUEST_QUEUE: usize = 32;
/// Answers read off the network ahead of the caller before the call stops reading.
const REPLY_QUEUE: usize = 32;

/// What one call sends: the first request and whether more may follow.
pub enum Requests {
    /// Exactly this request (unary and unary-stream calls).
    One(Vec<u8>),
    /// Requests the caller sends one by one, then closes.
    Streamed,
}

/// One answer: the data, and in a group who sent it.
pub struct Reply {
    pub outcome: Result<Vec<u8>>,
    /// The member's name (`org/ns/app`) in a group call.
    pub source: Option<String>,
    /// The identity the member was verified as (MLS), in a group call.
    pub subject: Option<String>,
    pub issuer: Option<String>,
}

/// Deadline and metadata of one call.
pub struct CallSettings {
    pub timeout: Option<Duration>,
    pub metadata: Option<HashMap<String, String>>,
}

pub struct ChannelCore {
    link: Arc<Link>,
    channel: Channel,
    /// Who the channel's sessions go to: the server, or every member of the group.
    members: Vec<ProtoName>,
    group: bool,
    connection: Option<u64>,
    routed: OnceCell<()>,
    /// Cancelled when the channel is dropped: its session ends then.
    dropped: CancellationToken,
}

impl ChannelCore {
    pub fn new(
        link: Arc<Link>,
        members: Vec<ProtoName>,
        group: bool,
        connection: Option<u64>,
    ) -> Result<Arc<Self>> {
        let slim = link.slim()?;
        if let Some(wanted) = connection
            && !link.connection_ids().contains(&wanted)
        {
            return Err(Error::invalid_argument(format!(
                "the app has no connection {wanted}"
            )));
        }
        let channel = napi::bindgen_prelude::within_runtime_if_available(|| {
            Channel::new_with_members(slim, members.clone(), group, connection)
        })?;
        // The channel going away, or the app closing, ends the channel's session.
        let dropped = CancellationToken::new();
        let (closing, app_closed, gone) = (channel.clone(), link.closed.clone(), dropped.clone());
        crate::runtime::spawn(async move {
            tokio::select! {
                _ = app_closed.cancelled() => {}
                _ = gone.cancelled() => {}
            }
            let _ = closing.close(Some(Duration::from_secs(1))).await;
        });
        Ok(Arc::new(Self {
            link,
            channel,
            members,
            group,
            connection,
            routed: OnceCell::new(),
            dropped,
        }))
    }

    pub fn is_group(&self) -> bool {
        self.group
    }

    /// Routes every member through the app's connection, once, before the first call.
    async fn route(&self) -> Result<()> {
        self.routed
            .get_or_try_init(|| async {
                let connection = self.link.connection_or(self.connection)?;
                let slim = self.link.slim()?;
                for member in &self.members {
                    slim.set_route(member, connection).await?;
                }
                Ok::<(), Error>(())
            })
            .await
            .map(|_| ())
    }

    /// A unary call: one request, the one answer.
    pub async fn unary(
        self: Arc<Self>,
        service: String,
        method: String,
        request: Vec<u8>,
        settings: CallSettings,
        limit: Limit,
    ) -> Result<Vec<u8>> {
        check_size(request.len(), "a request")?;
        let call = async {
            self.route().await?;
            let answers = self.channel.stream_stream::<Vec<u8>, Vec<u8>>(
                &service,
                &method,
                futures::stream::once(std::future::ready(request)),
                settings.timeout,
                settings.metadata,
            );
            futures::pin_mut!(answers);
            match answers.next().await {
                Some(answer) => answer.map_err(Error::from),
                None => Err(Error::rpc(RpcCode::Internal, "the server sent no answer")),
            }
        };
        limit
            .run(call, &self.link.closed, "the call")
            .await
            .map_err(closed_as_app)
    }

    /// Starts a call of any shape; its answers are read with [`CallCore::next`].
    pub fn open(
        self: &Arc<Self>,
        service: String,
        method: String,
        requests: Requests,
        settings: CallSettings,
        limit: Limit,
    ) -> Result<Arc<CallCore>> {
        self.link.slim()?;
        let (request_tx, request_rx) = mpsc::channel(REQUEST_QUEUE);
        let sender = match requests {
            Requests::One(request) => {
                check_size(request.len(), "a request")?;
                // Queued before the call starts: the queue is empty, so this cannot fail.
                let _ = request_tx.try_send(request);
                None
            }
            Requests::Streamed => Some(request_tx),
        };
        let (reply_tx, reply_rx) = mpsc::channel(REPLY_QUEUE);
        let call = Arc::new(CallCore {
            link: self.link.clone(),
            requests: Mutex::new(sender),
            replies: tokio::sync::Mutex::new(reply_rx),
            cancelled: CancellationToken::new(),
            limit: limit.clone(),
        });
        let channel = self.clone();
        let stop = call.cancelled.clone();
        crate::runtime::spawn(async move {
            let exchange = async {
                channel
                    .exchange(service, method, request_rx, settings, reply_tx)
                    .await;
                Ok(())
            };
            // The call's wait ends the exchange too: an abort stops the whole call.
            tokio::select! {
                _ = limit.run(exchange, &channel.link.closed, "the call") => {}
                _ = stop.cancelled() => {}
            }
        });
        Ok(call)
    }

    /// Runs one call until its answers end or the caller stops reading.
    async fn exchange(
        &self,
        service: String,
        method: String,
        requests: mpsc::Receiver<Vec<u8>>,
        settings: CallSettings,
        replies: mpsc::Sender<Reply>,
    ) {
        if let Err(err) = self.route().await {
            let _ = replies.send(Reply::failed(err)).await;
            return;
        }
        let requests = ReceiverStream::new(requests);
        let CallSettings { timeout, metadata } = settings;
        if self.group {
            let answers = self
                .channel
                .multicast_stream_stream_verified::<Vec<u8>, Vec<u8>>(
                    &service, &method, requests, timeout, metadata,
                );
            futures::pin_mut!(answers);
            while let Some(answer) = answers.next().await {
                let reply = match answer {
                    Ok(item) => Reply {
                        source: Some(crate::name::base(item.source())),
                        subject: item.identity().map(|id| id.subject().to_string()),
                        issuer: item
                            .identity()
                            .and_then(|id| id.issuer().map(str::to_string)),
                        outcome: Ok(item.into_message()),
                    },
                    Err(err) => Reply::failed(Error::from(err)),
                };
                if replies.send(reply).await.is_err() {
                    return;
                }
            }
        } else {
            let answers = self
                .channel
                .stream_stream::<Vec<u8>, Vec<u8>>(&service, &method, requests, timeout, metadata);
            futures::pin_mut!(answers);
            while let Some(answer) = answers.next().await {
                let reply = Reply {
                    outcome: answer.map_err(Error::from),
                    source: None,
                    subject: None,
                    issuer: None,
                };
                if replies.send(reply).await.is_err() {
                    return;
                }
            }
        }
    }

    /// The verified identity of a point-to-point channel's server, once a call set up
    /// the session (MLS).
    pub async fn peer(&self) -> Option<(String, Option<String>)> {
        let identity = self.channel.peer_identity().await?;
        Some((
            identity.subject().to_string(),
            identity.issuer().map(str::to_string),
        ))
    }

    /// Ends the channel's session; the next call sets up a new one.
    pub async fn close(&self) -> Result<()> {
        Ok(self.channel.close(Some(Duration::from_secs(5))).await?)
    }
}

impl Drop for ChannelCore {
    fn drop(&mut self) {
        self.dropped.cancel();
    }
}

impl Reply {
    fn failed(err: Error) -> Self {
        // A group member's own failure names the member; the call goes on.
        let source = err.rpc.as_ref().and_then(|rpc| rpc.origin.clone());
        Self {
            outcome: Err(err),
            source,
            subject: None,
            issuer: None,
        }
    }

    /// A failure that ends the whole call rather than one member's answer.
    pub fn ends_call(&self) -> bool {
        self.outcome.is_err() && self.source.is_none()
    }
}

/// One call in progress: the caller's end of its two queues.
pub struct CallCore {
    link: Arc<Link>,
    requests: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    replies: tokio::sync::Mutex<mpsc::Receiver<Reply>>,
    cancelled: CancellationToken,
    /// The caller's wait, for every send and read of the call.
    limit: Limit,
}

impl CallCore {
    /// Queues one request; waits while the queue is full.
    pub async fn send(self: Arc<Self>, request: Vec<u8>) -> Result<()> {
        check_size(request.len(), "a request")?;
        let sender = self.requests.lock().clone().ok_or_else(|| {
            Error::invalid_argument("the call takes no more requests (closeSend was called)")
        })?;
        let queued = async {
            sender.send(request).await.map_err(|_| {
                Error::rpc(
                    RpcCode::FailedPrecondition,
                    "the call has ended; no more requests can be sent",
                )
            })
        };
        self.limit
            .run(queued, &self.link.closed, "send")
            .await
            .map_err(closed_as_app)
    }

    /// Ends the requests: the server sees the end of its request stream.
    pub fn close_send(&self) {
        self.requests.lock().take();
    }

    /// The next answer, or `None` once the answers ended.
    pub async fn next(self: Arc<Self>) -> Result<Option<Reply>> {
        let mut replies = self.replies.try_lock().map_err(|_| {
            Error::new(Code::Busy, "another read of this call's answers is pending")
        })?;
        let next = async { Ok(replies.recv().await) };
        self.limit
            .run(next, &self.link.closed, "the call")
            .await
            .map_err(closed_as_app)
    }

    /// An answer already received, without waiting; `None` when none is ready now (the
    /// end of the answers, too, is only told by `next`). Saves a promise per answer.
    pub fn try_next(&self) -> Option<Reply> {
        self.replies.try_lock().ok()?.try_recv().ok()
    }

    /// Stops the call: nothing more is sent or read.
    pub fn cancel(&self) {
        self.close_send();
        self.cancelled.cancel();
    }
}

impl Drop for CallCore {
    fn drop(&mut self) {
        self.cancelled.cancel();
    }
}

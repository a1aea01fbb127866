//! One call on the serving side as JavaScript holds it: its request (or request stream),
//! what the server knows about it, and where its answer goes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use futures::StreamExt;
use parking_lot::Mutex;
use slim_rpc::{Context, DecodedStream, RpcError};
use tokio::sync::{mpsc, oneshot};

use crate::errors::{Code, Error, Result};
use crate::rpc::check_size;
use crate::status::RpcCode;

pub type Answer = std::result::Result<Vec<u8>, RpcError>;

/// Where a handler's answer goes.
pub enum Answers {
    One(oneshot::Sender<Answer>),
    Many(mpsc::Sender<Answer>),
}

/// What the caller knows about one incoming call.
pub struct CallInfo {
    pub session_id: String,
    pub metadata: HashMap<String, String>,
    /// Milliseconds since the epoch.
    pub deadline: f64,
    pub subject: Option<String>,
    pub issuer: Option<String>,
}

impl CallInfo {
    fn of(context: &Context) -> Self {
        let deadline = context
            .deadline()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64() * 1000.0);
        Self {
            session_id: context.session_id(),
            metadata: context.metadata(),
            deadline,
            subject: context.peer_subject(),
            issuer: context.peer_issuer(),
        }
    }
}

/// One call handed to JavaScript.
pub struct IncomingCore {
    pub handler: u32,
    pub info: CallInfo,
    request: Mutex<Option<Vec<u8>>>,
    requests: tokio::sync::Mutex<Option<DecodedStream<Vec<u8>>>>,
    answers: Mutex<Option<Answers>>,
}

/// A call's requests as upstream gives them to the adapter.
pub enum Input {
    One(Vec<u8>),
    Streamed(DecodedStream<Vec<u8>>),
}

impl IncomingCore {
    pub fn new(handler: u32, context: &Context, input: Input, answers: Answers) -> Self {
        let (request, requests) = match input {
            Input::One(request) => (Some(request), None),
            Input::Streamed(requests) => (None, Some(requests)),
        };
        Self {
            handler,
            info: CallInfo::of(context),
            request: Mutex::new(request),
            requests: tokio::sync::Mutex::new(requests),
            answers: Mutex::new(Some(answers)),
        }
    }

    /// The request of a unary-request call, once.
    pub fn take_request(&self) -> Option<Vec<u8>> {
        self.request.lock().take()
    }

    /// The next streamed request, or `None` once the caller closed its requests.
    pub async fn next_request(self: Arc<Self>) -> Result<Option<Vec<u8>>> {
        let mut requests = self
            .requests
            .try_lock()
            .map_err(|_| Error::new(Code::Busy, "another read of the requests is pending"))?;
        let Some(stream) = requests.as_mut() else {
            return Ok(None);
        };
        match stream.next().await {
            Some(request) => Ok(Some(request?)),
            None => {
                requests.take();
                Ok(None)
            }
        }
    }

    /// The answer of a unary-answer call.
    pub fn respond(&self, answer: Vec<u8>) -> Result<()> {
        check_size(answer.len(), "an answer")?;
        let taken = self.answers.lock().take();
        match taken {
            Some(Answers::One(reply)) => {
                let _ = reply.send(Ok(answer));
                Ok(())
            }
            Some(many @ Answers::Many(_)) => {
                *self.answers.lock() = Some(many);
                Err(Error::invalid_argument(
                    "a streaming method answers with send() and end()",
                ))
            }
            None => Err(answered()),
        }
    }

    /// One answer of a streaming-answer call; waits while the queue is full.
    pub async fn send(self: Arc<Self>, answer: Vec<u8>) -> Result<()> {
        check_size(answer.len(), "an answer")?;
        let sender = self.stream_sender()?;
        sender.send(Ok(answer)).await.map_err(|_| call_gone())
    }

    /// One answer of a streaming-answer call if the queue has room: `false` when it is
    /// full, and the caller then waits with `send`. Saves a promise per answer.
    pub fn try_send(&self, answer: Vec<u8>) -> Result<bool> {
        check_size(answer.len(), "an answer")?;
        match self.stream_sender()?.try_send(Ok(answer)) {
            Ok(()) => Ok(true),
            Err(mpsc::error::TrySendError::Full(_)) => Ok(false),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(call_gone()),
        }
    }

    fn stream_sender(&self) -> Result<mpsc::Sender<Answer>> {
        match &*self.answers.lock() {
            Some(Answers::Many(sender)) => Ok(sender.clone()),
            Some(Answers::One(_)) => Err(Error::invalid_argument(
                "a unary method answers once, with respond()",
            )),
            None => Err(answered()),
        }
    }

    /// Ends a streaming answer.
    pub fn end(&self) {
        let mut answers = self.answers.lock();
        if matches!(*answers, Some(Answers::Many(_))) {
            answers.take();
        }
    }

    /// Fails the call with a status; the caller gets it as its error.
    pub fn fail(&self, status: RpcCode, message: String, details: Option<Vec<u8>>) {
        let status = if status == RpcCode::Ok {
            RpcCode::Unknown
        } else {
            status
        };
        let error = match details {
            Some(details) => RpcError::with_details(status.into(), message, details),
            None => RpcError::new(status.into(), message),
        };
        let taken = self.answers.lock().take();
        match taken {
            Some(Answers::One(reply)) => {
                let _ = reply.send(Err(error));
            }
            // After the answers already queued, never instead of them.
            Some(Answers::Many(sender)) => crate::runtime::spawn(async move {
                let _ = sender.send(Err(error)).await;
            }),
            None => {}
        }
    }
}

fn answered() -> Error {
    Error::invalid_argument("the call was already answered")
}

fn call_gone() -> Error {
    Error::rpc(
        RpcCode::Cancelled,
        "the call has ended (its deadline passed or the caller went away)",
    )
}

impl Drop for IncomingCore {
    /// A call JavaScript let go of unanswered fails rather than looking answered.
    fn drop(&mut self) {
        if self.answers.get_mut().is_some() {
            self.fail(
                RpcCode::Internal,
                "the handler ended without answering".to_string(),
                None,
            );
        }
    }
}

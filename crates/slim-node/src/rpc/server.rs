//! The serving side: upstream's `Server` with one registered adapter per method. Each
//! adapter hands its call to JavaScript through one bounded queue of incoming calls and
//! waits for the answer, so upstream keeps the wire, the demultiplexing and the
//! deadlines, and a JavaScript handler only sees bytes in and bytes out.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use slim_datapath::api::ProtoName;
use slim_rpc::{Context, DecodedStream, RpcError, Server};
use slim_session::notification::Notification;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{AppCore, Listener};
use crate::errors::{Code, Error, Result};
use crate::link::{Link, closed_as_app};
use crate::rpc::incoming::{Answer, Answers, IncomingCore, Input};
use crate::status::RpcCode;
use crate::wait::Limit;

/// Calls waiting for JavaScript to pick them up before upstream's adapters wait.
const CALL_QUEUE: usize = 256;
/// Answers a streaming handler may queue ahead of the network before `send` waits.
const ANSWER_QUEUE: usize = 32;
/// How long `stop` waits for upstream's session teardown once every call is answered:
/// upstream closes each session waiting up to 10 s for a peer that may have left already,
/// and that goes on in the background.
const TEARDOWN_GRACE: Duration = Duration::from_millis(500);

/// The four shapes of a method: whether requests and answers are streamed.
#[napi_derive::napi(string_enum = "kebab-case")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcShape {
    UnaryUnary,
    UnaryStream,
    StreamUnary,
    StreamStream,
}

/// Where a server stands: handlers are registered before it serves, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Registering,
    Serving,
    Stopped,
}

type Sessions = mpsc::Sender<std::result::Result<Notification, slim_session::SessionError>>;

pub struct ServerCore {
    app: Arc<AppCore>,
    server: Server,
    /// Upstream's server reads its sessions from here; `serve` feeds it the app's.
    sessions: Sessions,
    handoff: Handoff,
    incoming: tokio::sync::Mutex<mpsc::Receiver<Arc<IncomingCore>>>,
    handlers: Mutex<u32>,
    stage: Mutex<Stage>,
    stopped: CancellationToken,
}

impl ServerCore {
    pub fn new(app: Arc<AppCore>, name: ProtoName, connection: Option<u64>) -> Result<Arc<Self>> {
        let slim = app.link.slim()?;
        let connection = Some(app.link.connection_or(connection)?);
        let (sessions, sessions_rx) = mpsc::channel(16);
        let server = napi::bindgen_prelude::within_runtime_if_available(|| {
            Server::new_with_connection_and_runtime(slim, name, connection, sessions_rx, None)
        });
        let (calls, incoming) = mpsc::channel(CALL_QUEUE);
        Ok(Arc::new(Self {
            app,
            server,
            sessions,
            handoff: Handoff {
                calls,
                in_progress: TaskTracker::new(),
            },
            incoming: tokio::sync::Mutex::new(incoming),
            handlers: Mutex::new(0),
            stage: Mutex::new(Stage::Registering),
            stopped: CancellationToken::new(),
        }))
    }

    fn link(&self) -> &Arc<Link> {
        &self.app.link
    }

    /// Registers `service/method` with the given shape; its calls arrive tagged with the
    /// returned number.
    pub fn register(&self, service: &str, method: &str, shape: RpcShape) -> Result<u32> {
        if *self.stage.lock() != Stage::Registering {
            return Err(Error::invalid_argument(
                "register every method before serve()",
            ));
        }
        if service.is_empty() || method.is_empty() {
            return Err(Error::invalid_argument(
                "service and method must not be empty",
            ));
        }
        let handler = {
            let mut count = self.handlers.lock();
            *count += 1;
            *count - 1
        };
        let calls = self.handoff.clone();
        let server = &self.server;
        match shape {
            RpcShape::UnaryUnary => server.register_unary_unary(
                service,
                method,
                move |request: Vec<u8>, context: Context| {
                    answer_once(calls.clone(), handler, context, Input::One(request))
                },
            ),
            RpcShape::StreamUnary => server.register_stream_unary(
                service,
                method,
                move |requests: DecodedStream<Vec<u8>>, context: Context| {
                    answer_once(calls.clone(), handler, context, Input::Streamed(requests))
                },
            ),
            RpcShape::UnaryStream => server.register_unary_stream(
                service,
                method,
                move |request: Vec<u8>, context: Context| {
                    answer_streamed(calls.clone(), handler, context, Input::One(request))
                },
            ),
            RpcShape::StreamStream => server.register_stream_stream(
                service,
                method,
                move |requests: DecodedStream<Vec<u8>>, context: Context| {
                    answer_streamed(calls.clone(), handler, context, Input::Streamed(requests))
                },
            ),
        }
        Ok(handler)
    }

    /// Claims the app's incoming sessions (BUSY while the app listens for sessions itself)
    /// and returns the serving, which ends when the server or the app closes.
    pub fn serve(self: &Arc<Self>) -> Result<impl Future<Output = Result<()>> + use<>> {
        let mut stage = self.stage.lock();
        if *stage != Stage::Registering {
            return Err(Error::invalid_argument("the server already served"));
        }
        self.link().slim()?;
        let listener = self.app.listener().map_err(|_| {
            Error::new(
                Code::Busy,
                "the app already listens for sessions; an RPC server takes all of them",
            )
        })?;
        *stage = Stage::Serving;
        let core = self.clone();
        Ok(async move { core.run(listener).await })
    }

    async fn run(self: Arc<Self>, listener: Listener) -> Result<()> {
        let feed = forward_sessions(listener, self.sessions.clone());
        let outcome = tokio::select! {
            served = self.server.serve() => served.map_err(Error::from),
            _ = feed => Ok(()),
            _ = self.stopped.cancelled() => Ok(()),
            _ = self.link().closed.cancelled() => Ok(()),
        };
        self.stop().await;
        outcome
    }

    /// The next call for JavaScript, or `None` once the server stopped.
    pub async fn next_call(self: Arc<Self>) -> Result<Option<Arc<IncomingCore>>> {
        let mut incoming = self
            .incoming
            .try_lock()
            .map_err(|_| Error::new(Code::Busy, "another read of the calls is pending"))?;
        let next = async { Ok(incoming.recv().await) };
        match Limit::default().run(next, &self.stopped, "serving").await {
            Err(err) if err.code == Code::Closed => Ok(None),
            other => other.map_err(closed_as_app),
        }
    }

    /// Stops serving: no new calls; calls in progress end first. Idempotent.
    pub async fn stop(&self) {
        *self.stage.lock() = Stage::Stopped;
        self.stopped.cancel();
        {
            // `next_call` lets go of the queue once stopped. Calls still queued never
            // reached a handler: they are answered now, and no more are taken.
            let mut incoming = self.incoming.lock().await;
            incoming.close();
            while let Ok(call) = incoming.try_recv() {
                call.fail(RpcCode::Unavailable, "the server is stopping".into(), None);
            }
        }
        self.handoff.in_progress.close();
        let shutdown = self.server.shutdown();
        tokio::pin!(shutdown);
        tokio::select! {
            _ = &mut shutdown => {}
            _ = self.handoff.in_progress.wait() => {
                let _ = tokio::time::timeout(TEARDOWN_GRACE, shutdown).await;
            }
        }
    }
}

/// Passes the app's new sessions to upstream's server until either side ends.
async fn forward_sessions(mut listener: Listener, sessions: Sessions) {
    while let Some(notification) = listener.recv().await {
        // Only new sessions concern the server; upstream's would stop on anything else.
        if let Ok(Notification::NewSession(context)) = notification
            && sessions
                .send(Ok(Notification::NewSession(context)))
                .await
                .is_err()
        {
            return;
        }
    }
}

/// Where the adapters hand calls to JavaScript, and the calls not answered yet.
#[derive(Clone)]
struct Handoff {
    calls: mpsc::Sender<Arc<IncomingCore>>,
    in_progress: TaskTracker,
}

impl Handoff {
    /// Hands a call to JavaScript.
    async fn hand_over(
        &self,
        handler: u32,
        context: &Context,
        input: Input,
        answers: Answers,
    ) -> std::result::Result<(), RpcError> {
        let call = IncomingCore::new(handler, context, input, answers);
        self.calls
            .send(Arc::new(call))
            .await
            .map_err(|_| RpcError::unavailable("the server is stopping"))
    }
}

async fn answer_once(
    handoff: Handoff,
    handler: u32,
    context: Context,
    input: Input,
) -> std::result::Result<Vec<u8>, RpcError> {
    let _in_progress = handoff.in_progress.token();
    let (reply, answer) = oneshot::channel();
    handoff
        .hand_over(handler, &context, input, Answers::One(reply))
        .await?;
    answer
        .await
        .unwrap_or_else(|_| Err(RpcError::unavailable("the server stopped before answering")))
}

async fn answer_streamed(
    handoff: Handoff,
    handler: u32,
    context: Context,
    input: Input,
) -> std::result::Result<impl futures::Stream<Item = Answer> + use<>, RpcError> {
    let in_progress = handoff.in_progress.token();
    let (sender, answers) = mpsc::channel(ANSWER_QUEUE);
    handoff
        .hand_over(handler, &context, input, Answers::Many(sender))
        .await?;
    // In progress until upstream has sent the last answer and drops the stream.
    Ok(futures::StreamExt::map(
        ReceiverStream::new(answers),
        move |answer| {
            let _ = &in_progress;
            answer
        },
    ))
}

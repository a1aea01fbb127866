//! The slimrpc roles of `bench/PROTOCOL.md` on upstream's `agntcy-slim-rpc`: a server
//! with `Echo` (unary) and `Stream` (server streaming), and the two callers measuring them.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, anyhow};
use futures::StreamExt;
use serde_json::json;
use slim_rpc::{Channel, Context, RpcError, Server};
use slim_session::notification::Notification;
use tokio::sync::{mpsc, watch};

use crate::client::{Client, Notifications, name};
use crate::config::Config;
use crate::roles::{REPLY_TIMEOUT, Tally, pace, stopped};
use crate::wire::{
    Command, HEADER, PROGRESS_EVERY, commands, decode, emit, encode, now_ns, wait_for,
};

/// The benchmark's service, the same in every client.
pub const SERVICE: &str = "bench.Bench";

/// Passes only new sessions on: upstream's server loop ends on any other notification.
async fn forward_new_sessions(
    mut notifications: Notifications,
    sessions: mpsc::Sender<std::result::Result<Notification, slim_session::SessionError>>,
) {
    while let Some(notification) = notifications.recv().await {
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

pub async fn server(config: &Config) -> Result<()> {
    let mut commands = commands();
    let mut client = Client::connect(config).await?;
    let (sessions, sessions_rx) = mpsc::channel(16);
    let server = Arc::new(Server::new_with_connection_and_runtime(
        client.app.clone(),
        name(&config.name)?,
        Some(client.connection),
        sessions_rx,
        None,
    ));
    server.register_unary_unary(SERVICE, "Echo", |request: Vec<u8>, _: Context| async move {
        Ok::<_, RpcError>(request)
    });
    let payload = config.payload;
    server.register_unary_stream(SERVICE, "Stream", move |request: Vec<u8>, _: Context| {
        // The request's sequence field is how many answers the caller wants.
        let answers = decode(&request).map_or(0, |(count, _)| count);
        async move {
            let stream = futures::stream::iter(0..answers).map(move |seq| Ok(encode(seq, payload)));
            Ok::<_, RpcError>(stream)
        }
    });
    let forwarding = tokio::spawn(forward_new_sessions(client.take_notifications(), sessions));
    let mut serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve().await }
    });
    emit(&json!({"event": "connected"}));
    let outcome = tokio::select! {
        served = &mut serving => served.map_err(|err| anyhow!("the server task failed: {err}"))
            .and_then(|served| served.map_err(|err| anyhow!("serve: {err}"))),
        _ = stopped(&mut commands) => Ok(()),
    };
    server.shutdown().await;
    forwarding.abort();
    client.close(None).await;
    outcome
}

/// Connects, opens a channel to the server with one first call (which sets its session
/// up), reports `ready` and waits for `go`; `None` when told to stop instead.
async fn open(
    config: &Config,
    commands: &mut watch::Receiver<Command>,
) -> Result<Option<(Client, Channel)>> {
    let client = Client::connect(config).await?;
    let started = Instant::now();
    let server = name(
        config
            .members
            .first()
            .ok_or_else(|| anyhow!("rpc needs a server"))?,
    )?;
    client.app.set_route(&server, client.connection).await?;
    let channel = Channel::new_with_connection(
        client.app.clone(),
        Arc::new(server),
        Some(client.connection),
    );
    channel
        .unary::<Vec<u8>, Vec<u8>>(
            SERVICE,
            "Echo",
            encode(0, HEADER),
            Some(REPLY_TIMEOUT),
            None,
        )
        .await?;
    emit(&json!({
        "event": "ready",
        "appMs": client.app_ms,
        "connectMs": client.connect_ms,
        "sessionMs": started.elapsed().as_secs_f64() * 1000.0,
    }));
    if wait_for(commands, Command::Go).await == Command::Stop {
        close(client, channel).await;
        return Ok(None);
    }
    Ok(Some((client, channel)))
}

async fn close(client: Client, channel: Channel) {
    let _ = channel.close(Some(REPLY_TIMEOUT)).await;
    client.close(None).await;
}

pub async fn unary(config: &Config) -> Result<()> {
    let mut commands = commands();
    let Some((client, channel)) = open(config, &mut commands).await? else {
        return Ok(());
    };
    let mut rtt_us = Vec::with_capacity(config.count as usize);
    let (begin, mut measuring) = (Instant::now(), Instant::now());
    // Stopped at the cap, the round trips measured so far still count.
    let mut seq = 0;
    while config.admits(seq, measuring) {
        if *commands.borrow() == Command::Stop {
            break;
        }
        pace(config.rate, begin, seq).await;
        let sent = now_ns();
        if seq == config.warmup {
            measuring = Instant::now();
        }
        let answer: Vec<u8> = channel
            .unary(
                SERVICE,
                "Echo",
                encode(seq, config.payload),
                Some(REPLY_TIMEOUT),
                None,
            )
            .await?;
        if decode(&answer).map(|(s, _)| s) != Some(seq) {
            anyhow::bail!("the answer to call {seq} carried another sequence number");
        }
        if seq >= config.warmup {
            rtt_us.push(now_ns().saturating_sub(sent) as f64 / 1000.0);
        }
        seq += 1;
    }
    emit(&json!({"event": "result", "received": rtt_us.len(), "rttUs": rtt_us}));
    stopped(&mut commands).await;
    close(client, channel).await;
    Ok(())
}

pub async fn stream(config: &Config) -> Result<()> {
    let mut commands = commands();
    let Some((client, channel)) = open(config, &mut commands).await? else {
        return Ok(());
    };
    let mut tally = Tally::new(config.total());
    {
        let answers = channel.unary_stream::<Vec<u8>, Vec<u8>>(
            SERVICE,
            "Stream",
            encode(config.total(), HEADER),
            None,
            None,
        );
        futures::pin_mut!(answers);
        let mut progress = tokio::time::interval(PROGRESS_EVERY);
        loop {
            tokio::select! {
                answer = answers.next() => match answer {
                    Some(answer) => {
                        tally.record(&answer?, config);
                        if tally.window_over(config) {
                            break;
                        }
                    }
                    None => break,
                },
                _ = progress.tick() => emit(&json!({"event": "progress", "received": tally.unique})),
                _ = stopped(&mut commands) => break,
            }
        }
    }
    emit(&json!({"event": "progress", "received": tally.unique}));
    tally.report();
    stopped(&mut commands).await;
    close(client, channel).await;
    Ok(())
}

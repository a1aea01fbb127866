//! The message-level client roles of `bench/PROTOCOL.md`; the slimrpc ones are in `rpc.rs`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::json;
use slim_datapath::api::ProtoMessage;
use tokio::sync::watch;

use crate::client::{Client, Joined};
use crate::config::Config;
use crate::wire::{Command, PROGRESS_EVERY, commands, decode, emit, encode, now_ns, wait_for};

/// How long a requester waits for one reply before the run counts as failed.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages per window refill when publishing unpaced, as the slim-node client's
/// `publishMany` batches.
const BATCH: usize = 64;

fn payload_of(message: &ProtoMessage) -> Option<&[u8]> {
    let content = message.get_payload()?;
    Some(&content.as_application_payload().ok()?.blob)
}

/// Sleeps until message `seq` is due when sending at `rate` per second.
pub(crate) async fn pace(rate: f64, begin: Instant, seq: u64) {
    if rate > 0.0 {
        let due = begin + Duration::from_secs_f64(seq as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
    }
}

pub(crate) async fn stopped(commands: &mut watch::Receiver<Command>) {
    wait_for(commands, Command::Stop).await;
}

/// Connects, creates the session with every member joined, reports `ready` and waits
/// for `go`; `None` when told to stop instead.
async fn start(
    config: &Config,
    commands: &mut watch::Receiver<Command>,
) -> Result<Option<(Client, Joined)>> {
    let client = Client::connect(config).await?;
    let started = Instant::now();
    let joined = client.create_session(config).await?;
    emit(&json!({
        "event": "ready",
        "appMs": client.app_ms,
        "connectMs": client.connect_ms,
        "sessionMs": started.elapsed().as_secs_f64() * 1000.0,
    }));
    if wait_for(commands, Command::Go).await == Command::Stop {
        client.close(Some(joined)).await;
        return Ok(None);
    }
    Ok(Some((client, joined)))
}

pub async fn publisher(config: &Config) -> Result<()> {
    let mut commands = commands();
    let Some((client, joined)) = start(config, &mut commands).await? else {
        return Ok(());
    };
    let controller = &joined.controller;
    let destination = controller.dst().clone();
    // The window, refilled by the slim-node client's rule (bench/clients/common.ts,
    // `publishInBatches`): unpaced, messages go in batches of `BATCH` whose slots all
    // free when the last of them completes (is acknowledged, when reliable); paced, one
    // at a time.
    let batch = if config.rate > 0.0 {
        1
    } else {
        BATCH.min(config.window).max(1)
    };
    let mut in_flight = FuturesUnordered::new();
    let mut outstanding = 0usize;
    let (mut failed, mut start_ns, mut measuring) = (0u64, now_ns(), Instant::now());
    let begin = Instant::now();
    let mut last_progress = Instant::now();
    let total = config.total();
    let mut seq = 0u64;
    while config.admits(seq, measuring) {
        pace(config.rate, begin, seq).await;
        // A batch never straddles the end of the warm-up, where the clock starts.
        let end = if seq < config.warmup {
            config.warmup
        } else {
            total
        };
        let count = (batch as u64).min(end - seq) as usize;
        while outstanding + count > config.window {
            if let Some((settled, failures)) = in_flight.next().await {
                outstanding -= settled;
                failed += failures;
            }
        }
        if seq == config.warmup {
            (start_ns, measuring) = (now_ns(), Instant::now());
        }
        let mut handles = Vec::with_capacity(count);
        for n in seq..seq + count as u64 {
            match controller
                .publish(&destination, encode(n, config.payload), None, None)
                .await
            {
                Ok(handle) => handles.push(handle),
                Err(_) => failed += 1,
            }
        }
        outstanding += count;
        in_flight.push(async move {
            let outcomes = futures::future::join_all(handles).await;
            (
                count,
                outcomes.iter().filter(|outcome| outcome.is_err()).count() as u64,
            )
        });
        seq += count as u64;
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            emit(&json!({"event": "progress", "sent": seq}));
        }
    }
    while let Some((_, failures)) = in_flight.next().await {
        failed += failures;
    }
    emit(&json!({
        "event": "sent",
        "sent": seq,
        "failed": failed,
        "startNs": start_ns,
        "endNs": now_ns(),
    }));
    stopped(&mut commands).await;
    client.close(Some(joined)).await;
    Ok(())
}

/// What a subscriber has seen.
pub(crate) struct Tally {
    seen: Vec<bool>,
    pub(crate) unique: u64,
    measured: u64,
    duplicates: u64,
    reordered: u64,
    highest: Option<u64>,
    first_ns: u64,
    last_ns: u64,
    latency_us: Vec<f64>,
}

impl Tally {
    pub(crate) fn new(total: u64) -> Self {
        Self {
            seen: vec![false; total as usize],
            unique: 0,
            measured: 0,
            duplicates: 0,
            reordered: 0,
            highest: None,
            first_ns: 0,
            last_ns: 0,
            latency_us: Vec::new(),
        }
    }

    pub(crate) fn record(&mut self, payload: &[u8], config: &Config) {
        let now = now_ns();
        let Some((seq, sent)) = decode(payload) else {
            return;
        };
        let index = seq as usize;
        if index >= self.seen.len() {
            self.seen.resize(index + 1, false);
        }
        if std::mem::replace(&mut self.seen[index], true) {
            self.duplicates += 1;
            return;
        }
        self.unique += 1;
        if seq < config.warmup {
            return;
        }
        if self.highest.is_some_and(|highest| seq < highest) {
            self.reordered += 1;
        }
        self.highest = self.highest.max(Some(seq));
        if self.measured == 0 {
            self.first_ns = now;
        }
        self.measured += 1;
        self.last_ns = now;
        if config.latency {
            self.latency_us
                .push(now.saturating_sub(sent) as f64 / 1000.0);
        }
    }

    /// Whether `seconds` have passed since the first measured message (never, without).
    pub(crate) fn window_over(&self, config: &Config) -> bool {
        self.measured > 0
            && config.seconds > 0.0
            && now_ns().saturating_sub(self.first_ns) as f64 >= config.seconds * 1e9
    }

    pub(crate) fn report(&self) {
        emit(&json!({
            "event": "result",
            "received": self.measured,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "firstNs": self.first_ns,
            "lastNs": self.last_ns,
            "latencyUs": self.latency_us,
        }));
    }
}

/// Waits for the invitation, unless told to stop first.
async fn accept(
    client: &mut Client,
    commands: &mut watch::Receiver<Command>,
) -> Result<Option<Joined>> {
    tokio::select! {
        joined = client.accept_session() => joined.map(Some),
        _ = stopped(commands) => Ok(None),
    }
}

pub async fn subscriber(config: &Config) -> Result<()> {
    let mut commands = commands();
    let mut client = Client::connect(config).await?;
    emit(&json!({"event": "connected"}));
    let Some(mut joined) = accept(&mut client, &mut commands).await? else {
        Tally::new(0).report();
        return Ok(());
    };
    let mut tally = Tally::new(config.total());
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    while tally.unique < config.total() {
        tokio::select! {
            received = joined.rx.recv() => match received {
                Some(Ok(message)) => {
                    if let Some(payload) = payload_of(&message) {
                        tally.record(payload, config);
                    }
                }
                Some(Err(err)) => eprintln!("session error: {err}"),
                None => break,
            },
            _ = progress.tick() => emit(&json!({"event": "progress", "received": tally.unique})),
            _ = stopped(&mut commands) => break,
        }
    }
    emit(&json!({"event": "progress", "received": tally.unique}));
    tally.report();
    stopped(&mut commands).await;
    client.close(Some(joined)).await;
    Ok(())
}

pub async fn requester(config: &Config) -> Result<()> {
    let mut commands = commands();
    let Some((client, mut joined)) = start(config, &mut commands).await? else {
        return Ok(());
    };
    let destination = joined.controller.dst().clone();
    let mut rtt_us = Vec::with_capacity(config.count as usize);
    let (begin, mut measuring) = (Instant::now(), Instant::now());
    let mut seq = 0;
    while config.admits(seq, measuring) {
        pace(config.rate, begin, seq).await;
        let sent = now_ns();
        if seq == config.warmup {
            measuring = Instant::now();
        }
        // A round trip ends with the reply and the request's acknowledgement, as in
        // every client.
        let acknowledged = joined
            .controller
            .publish(&destination, encode(seq, config.payload), None, None)
            .await?;
        let reply = tokio::time::timeout(REPLY_TIMEOUT, joined.rx.recv())
            .await
            .with_context(|| format!("no reply to request {seq}"))?
            .ok_or_else(|| anyhow!("the session closed"))??;
        acknowledged.await?;
        if payload_of(&reply).and_then(decode).map(|(s, _)| s) != Some(seq) {
            anyhow::bail!("the reply to request {seq} carried another sequence number");
        }
        if seq >= config.warmup {
            rtt_us.push(now_ns().saturating_sub(sent) as f64 / 1000.0);
        }
        seq += 1;
    }
    emit(&json!({"event": "result", "received": rtt_us.len(), "rttUs": rtt_us}));
    stopped(&mut commands).await;
    client.close(Some(joined)).await;
    Ok(())
}

pub async fn responder(config: &Config) -> Result<()> {
    let mut commands = commands();
    let mut client = Client::connect(config).await?;
    emit(&json!({"event": "connected"}));
    let Some(mut joined) = accept(&mut client, &mut commands).await? else {
        return Ok(());
    };
    loop {
        tokio::select! {
            received = joined.rx.recv() => match received {
                Some(Ok(message)) => {
                    let Some(payload) = payload_of(&message) else { continue };
                    let (source, connection) = (message.get_source(), message.get_incoming_conn());
                    // The reply's acknowledgement is awaited before the next request, as
                    // in every client.
                    let acknowledged = joined
                        .controller
                        .publish_to(&source, connection, payload.to_vec(), None, None)
                        .await?;
                    acknowledged.await?;
                }
                Some(Err(err)) => eprintln!("session error: {err}"),
                None => break,
            },
            _ = stopped(&mut commands) => break,
        }
    }
    client.close(Some(joined)).await;
    Ok(())
}

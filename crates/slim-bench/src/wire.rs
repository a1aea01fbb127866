//! What every benchmark client shares: the payload layout, the clock, stdout events
//! and stdin commands.

use std::io::Write;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

/// Bytes of the header every payload starts with: sequence number and send time.
pub const HEADER: usize = 16;

/// Nanoseconds on `CLOCK_MONOTONIC`, the clock every client of a run stamps with.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer and CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn encode(seq: u64, size: usize) -> Vec<u8> {
    let mut payload = vec![0u8; size.max(HEADER)];
    payload[..8].copy_from_slice(&seq.to_le_bytes());
    payload[8..16].copy_from_slice(&now_ns().to_le_bytes());
    payload
}

/// Sequence number and send time, or `None` for a payload too short to be ours.
pub fn decode(payload: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let sent = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((seq, sent))
}

pub fn emit(event: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{event}");
    let _ = out.flush();
}

/// How often progress events are printed.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    None,
    Go,
    Stop,
}

/// The latest command read from stdin; end of input counts as `stop`.
pub fn commands() -> watch::Receiver<Command> {
    let (tx, rx) = watch::channel(Command::None);
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        loop {
            let command = match lines.next_line().await {
                Ok(Some(line)) if line.trim() == "go" => Command::Go,
                Ok(Some(line)) if line.trim() == "stop" => Command::Stop,
                Ok(Some(_)) => continue,
                _ => Command::Stop,
            };
            let stop = command == Command::Stop;
            let _ = tx.send(command);
            if stop {
                return;
            }
        }
    });
    rx
}

pub async fn wait_for(commands: &mut watch::Receiver<Command>, wanted: Command) -> Command {
    commands
        .wait_for(|c| *c == wanted || *c == Command::Stop)
        .await
        .map(|c| *c)
        .unwrap_or(Command::Stop)
}

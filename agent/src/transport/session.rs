//! One connection after TLS: the handshake (hello → challenge → proof → welcome), then
//! serving requests and exchanging heartbeats until the connection ends.
//!
//! Requests on software keys are answered inline in the reader (the cryptography takes
//! microseconds); requests on HSM keys on blocking threads (at most 16 at once per
//! connection), so that a slow token holds up neither other requests nor heartbeats. The
//! answers go to one writer task through a bounded queue, which feeds every queued message
//! to the socket and flushes once the queue is empty, so a burst of answers costs one
//! flush, and a slow broker slows the reader down rather than growing the queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use keybroker_agent_protocol::xks::XksErrorName;
use keybroker_agent_protocol::{
    decode, encode, random_nonce, AgentIdentity, Frame, Heartbeat, Reply, Request, Response,
    Welcome, XksError,
};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::connect::BrokerStream;
use super::{signalled, ConnectionError};
use crate::service::Service;

/// Longest wait for each handshake step (sending ours and hearing the broker's answer).
pub const HANDSHAKE_STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Heartbeat intervals of silence after which the broker is taken for gone.
pub const MISSED_HEARTBEATS: u32 = 3;

/// Longest wait for the close handshake when the agent closes the connection.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Bound on the heartbeat interval the broker's welcome may set.
const HEARTBEAT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(600));

/// Messages waiting for the writer; when full, the reader waits.
const OUTGOING_QUEUE: usize = 1024;

/// Handshake: sends hello, signs the broker's challenge together with `channel_binding`,
/// and returns the broker's welcome. A `refused` is [`ConnectionError::Refused`].
pub(super) async fn handshake(
    websocket: &mut BrokerStream,
    identity: &AgentIdentity,
    agent_id: &str,
    channel_binding: &[u8],
) -> Result<Welcome, ConnectionError> {
    let hello = identity.hello(agent_id, random_nonce());
    send_now(websocket, &Frame::Hello(hello.clone()), "hello").await?;
    let challenge = match next_frame(websocket, "challenge").await? {
        Frame::Challenge(challenge) => challenge,
        Frame::Refused(refused) => return Err(ConnectionError::Refused(refused.reason)),
        other => return Err(unexpected(&other, "challenge")),
    };
    let proof = identity.prove(&hello, &challenge.broker_nonce, channel_binding);
    send_now(websocket, &Frame::Proof(proof), "proof").await?;
    match next_frame(websocket, "welcome").await? {
        Frame::Welcome(welcome) => Ok(welcome),
        Frame::Refused(refused) => Err(ConnectionError::Refused(refused.reason)),
        other => Err(unexpected(&other, "welcome")),
    }
}

/// The heartbeat interval to use after `welcome` (the agent's own if the broker sets none).
pub(super) fn heartbeat_interval(welcome: &Welcome, configured: Duration) -> Duration {
    match welcome.heartbeat_interval_ms {
        0 => configured,
        millis => {
            Duration::from_millis(u64::from(millis)).clamp(HEARTBEAT_RANGE.0, HEARTBEAT_RANGE.1)
        }
    }
}

async fn send_now(
    websocket: &mut BrokerStream,
    frame: &Frame,
    step: &'static str,
) -> Result<(), ConnectionError> {
    let text = encode(frame).map_err(|error| ConnectionError::Protocol(error.to_string()))?;
    tokio::time::timeout(HANDSHAKE_STEP_TIMEOUT, websocket.send(Message::text(text)))
        .await
        .map_err(|_| ConnectionError::Timeout(step))?
        .map_err(|error| ConnectionError::WebSocket(Box::new(error)))
}

/// The next frame of the handshake, within [`HANDSHAKE_STEP_TIMEOUT`].
async fn next_frame(
    websocket: &mut BrokerStream,
    expecting: &'static str,
) -> Result<Frame, ConnectionError> {
    let next = async {
        loop {
            match websocket.next().await {
                None => return Err(ConnectionError::ClosedByBroker(None)),
                Some(Err(error)) => return Err(ConnectionError::WebSocket(Box::new(error))),
                Some(Ok(Message::Text(text))) => {
                    return decode(&text)
                        .map_err(|error| ConnectionError::Protocol(error.to_string()))
                }
                Some(Ok(Message::Binary(_))) => return Err(binary_message()),
                Some(Ok(Message::Close(frame))) => return Err(closed_by_broker(frame)),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            }
        }
    };
    tokio::time::timeout(HANDSHAKE_STEP_TIMEOUT, next)
        .await
        .map_err(|_| ConnectionError::Timeout(expecting))?
}

/// Serves the welcomed connection until it fails (the error) or `shutdown` is signalled
/// (`Ok`, after a normal close).
pub(super) async fn serve(
    websocket: BrokerStream,
    service: &Arc<Service>,
    interval: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let (sink, mut stream) = websocket.split();
    let (outgoing, queue) = mpsc::channel(OUTGOING_QUEUE);
    let mut writer = tokio::spawn(write_queued(sink, queue));
    let (outcome, writer_done) = tokio::select! {
        outcome = read_loop(&mut stream, &outgoing, service, interval, shutdown) => (outcome, false),
        written = &mut writer => (Err(match written {
            Ok(Err(error)) => ConnectionError::WebSocket(Box::new(error)),
            _ => ConnectionError::Send("the connection's writer stopped".to_owned()),
        }), true),
    };
    let close = match &outcome {
        Ok(()) => Some((CloseCode::Normal, "agent shutting down")),
        Err(ConnectionError::Protocol(_)) => Some((CloseCode::Protocol, "protocol error")),
        Err(ConnectionError::HeartbeatTimeout(_)) => Some((CloseCode::Away, "no heartbeat")),
        Err(_) => None,
    };
    let finish = async {
        if let Some((code, reason)) = close {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = outgoing.send(Message::Close(Some(frame))).await;
        }
        drop(outgoing);
        if !writer_done {
            let _ = (&mut writer).await;
        }
        if outcome.is_ok() {
            // The close handshake: the broker answers with its close frame, after which
            // the stream ends.
            while let Some(Ok(_)) = stream.next().await {}
        }
    };
    let finished = tokio::time::timeout(CLOSE_TIMEOUT, finish).await.is_ok();
    if !finished {
        // Aborting a task that already finished does nothing.
        writer.abort();
    }
    outcome
}

/// Feeds queued messages to the socket, flushing whenever the queue runs empty; returns
/// when the queue is closed and everything is flushed.
async fn write_queued(
    mut sink: SplitSink<BrokerStream, Message>,
    mut queue: mpsc::Receiver<Message>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    while let Some(message) = queue.recv().await {
        sink.feed(message).await?;
        while let Ok(message) = queue.try_recv() {
            sink.feed(message).await?;
        }
        sink.flush().await?;
    }
    Ok(())
}

async fn read_loop(
    stream: &mut SplitStream<BrokerStream>,
    outgoing: &mpsc::Sender<Message>,
    service: &Arc<Service>,
    interval: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let silence_limit = interval * MISSED_HEARTBEATS;
    let mut last_heard = tokio::time::Instant::now();
    let mut heartbeats = tokio::time::interval_at(last_heard + interval, interval);
    heartbeats.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut next_seq: u64 = 0;
    let liveness = tokio::time::sleep_until(last_heard + silence_limit);
    tokio::pin!(liveness);
    let blocking_slots = Arc::new(Semaphore::new(MAX_BLOCKING_REQUESTS));
    loop {
        tokio::select! {
            message = stream.next() => {
                let received = Instant::now();
                last_heard = tokio::time::Instant::from_std(received);
                match message {
                    None => return Err(ConnectionError::ClosedByBroker(None)),
                    Some(Err(error)) => return Err(ConnectionError::WebSocket(Box::new(error))),
                    Some(Ok(Message::Text(text))) => match answer(&text, received, service)? {
                        Answer::Now(reply) => send(outgoing, reply).await?,
                        Answer::Nothing => {}
                        Answer::Blocking(request) => {
                            answer_off_thread(request, received, service, outgoing, &blocking_slots);
                        }
                    },
                    Some(Ok(Message::Binary(_))) => return Err(binary_message()),
                    Some(Ok(Message::Close(frame))) => return Err(closed_by_broker(frame)),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                }
            }
            _ = heartbeats.tick() => {
                send(outgoing, Frame::Heartbeat(Heartbeat { seq: next_seq })).await?;
                next_seq = next_seq.wrapping_add(1);
            }
            () = &mut liveness => {
                // Re-armed lazily: a frame moves `last_heard`, not the timer.
                if last_heard.elapsed() >= silence_limit {
                    return Err(ConnectionError::HeartbeatTimeout(silence_limit));
                }
                liveness.as_mut().reset(last_heard + silence_limit);
            }
            () = signalled(shutdown) => return Ok(()),
        }
    }
}

/// HSM requests answered at once on one connection, each on a blocking thread; more wait
/// for a slot (the HSM's own session pool bounds them further).
const MAX_BLOCKING_REQUESTS: usize = 16;

/// What to do about one text message.
enum Answer {
    /// Send this frame back.
    Now(Frame),
    /// Nothing to send (a heartbeat acknowledgement).
    Nothing,
    /// A request whose answer may block (an HSM key): answered off the connection's thread.
    Blocking(Request),
}

/// What to do about one text message; `Err` for a protocol violation.
fn answer(text: &str, received: Instant, service: &Service) -> Result<Answer, ConnectionError> {
    match decode(text) {
        Ok(Frame::Request(request)) if service.may_block(&request) => Ok(Answer::Blocking(request)),
        Ok(Frame::Request(request)) => Ok(Answer::Now(Frame::Response(
            service.handle(&request, received),
        ))),
        Ok(Frame::Heartbeat(heartbeat)) => Ok(Answer::Now(Frame::HeartbeatAck(heartbeat))),
        Ok(Frame::HeartbeatAck(_)) => Ok(Answer::Nothing),
        Ok(other) => Err(unexpected(&other, "request or heartbeat")),
        Err(error) => match service.handle_undecodable(text) {
            Some(response) => Ok(Answer::Now(Frame::Response(response))),
            None => Err(ConnectionError::Protocol(error.to_string())),
        },
    }
}

/// Answers `request` on a blocking thread once a slot is free, and queues the response; the
/// connection keeps reading, answering and sending heartbeats meanwhile. A response for a
/// connection that has ended goes nowhere.
fn answer_off_thread(
    request: Request,
    received: Instant,
    service: &Arc<Service>,
    outgoing: &mpsc::Sender<Message>,
    slots: &Arc<Semaphore>,
) {
    let (service, outgoing, slots) = (service.clone(), outgoing.clone(), slots.clone());
    tokio::spawn(async move {
        let Ok(_slot) = slots.acquire_owned().await else {
            return;
        };
        let answered =
            tokio::task::spawn_blocking(move || service.handle(&request, received)).await;
        if let Ok(response) = answered {
            let _ = send(&outgoing, Frame::Response(response)).await;
        }
    });
}

/// Encodes `frame` and queues it for the writer.
async fn send(outgoing: &mpsc::Sender<Message>, frame: Frame) -> Result<(), ConnectionError> {
    let text = match encode(&frame) {
        Ok(text) => text,
        // A response too large for a frame (not expected: XKS bodies are small) still
        // answers its request, with an error.
        Err(error) => match &frame {
            Frame::Response(response) => {
                tracing::error!(request_id = response.id, %error, "response could not be encoded");
                encode(&Frame::Response(Response {
                    id: response.id,
                    result: Reply::Error(XksError::with_message(
                        XksErrorName::InternalException,
                        "the agent could not encode its response",
                    )),
                }))
                .map_err(|error| ConnectionError::Protocol(error.to_string()))?
            }
            _ => return Err(ConnectionError::Protocol(error.to_string())),
        },
    };
    outgoing
        .send(Message::text(text))
        .await
        .map_err(|_| ConnectionError::Send("the connection's writer has stopped".to_owned()))
}

fn frame_type(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello(_) => "hello",
        Frame::Challenge(_) => "challenge",
        Frame::Proof(_) => "proof",
        Frame::Welcome(_) => "welcome",
        Frame::Refused(_) => "refused",
        Frame::Request(_) => "request",
        Frame::Response(_) => "response",
        Frame::Heartbeat(_) => "heartbeat",
        Frame::HeartbeatAck(_) => "heartbeatAck",
    }
}

fn unexpected(frame: &Frame, expecting: &str) -> ConnectionError {
    ConnectionError::Protocol(format!(
        "expected {expecting}, the broker sent {}",
        frame_type(frame)
    ))
}

fn binary_message() -> ConnectionError {
    ConnectionError::Protocol("the broker sent a binary message; frames are text".to_owned())
}

fn closed_by_broker(frame: Option<CloseFrame>) -> ConnectionError {
    ConnectionError::ClosedByBroker(
        frame.map(|frame| format!("{} {}", u16::from(frame.code), frame.reason)),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn welcome(heartbeat_interval_ms: u32) -> Welcome {
        Welcome {
            heartbeat_interval_ms,
            request_timeout_ms: 5000,
            tenants: vec!["acme".into()],
        }
    }

    #[test]
    fn the_welcome_sets_the_heartbeat_interval_within_bounds() {
        let configured = Duration::from_secs(5);
        assert_eq!(heartbeat_interval(&welcome(0), configured), configured);
        assert_eq!(
            heartbeat_interval(&welcome(2000), configured),
            Duration::from_secs(2)
        );
        assert_eq!(
            heartbeat_interval(&welcome(1), configured),
            Duration::from_millis(100)
        );
        assert_eq!(
            heartbeat_interval(&welcome(u32::MAX), configured),
            Duration::from_secs(600)
        );
    }
}

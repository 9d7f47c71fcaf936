//! The connection loop. `axum::serve` sets no timer on hyper, so a client
//! that sends nothing, or its headers slowly, could hold a connection
//! forever; this loop is axum's with
//! - a first-byte timeout (hyper's header read timeout starts only once the
//!   protocol is known, which needs a first byte),
//! - an idle timeout for HTTP/1 keep-alive and HTTP/2 connections alike,
//! - a cap on open connections: at the cap the connection idle the longest
//!   is closed to make room, so a flood of silent connections cannot starve
//!   the ones that work (or `/health/live`),
//! - the peer address in each request's extensions (for per-address rate
//!   limits), and a bounded graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tower::ServiceExt;

use super::HttpLimits;

/// Serves `app` on `listener` until `shutdown` resolves. Then the listener
/// closes at once (new connections are refused), idle connections close, and
/// requests in flight finish within the request timeout.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.idle_timeout))
        .keep_alive_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let registry = Arc::new(Registry::new(limits.max_connections));
    let (stopping, stop_signal) = watch::channel(false);
    // Every connection task holds a sender; all dropped = all connections ended.
    let (alive, mut all_ended) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    pause_after_accept_error(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(tracked) = registry.admit() else {
            // At the cap with every connection busy: refuse this one.
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            stream,
            peer,
            app: app.clone(),
            builder: builder.clone(),
            tracked,
            registry: registry.clone(),
            stop_signal: stop_signal.clone(),
            limits: limits.clone(),
            _alive: alive.clone(),
        };
        tokio::spawn(connection.run());
    }
    drop(listener);
    let _ = stopping.send(true);
    drop(alive);
    let grace = limits.request_timeout + Duration::from_secs(1);
    if tokio::time::timeout(grace, all_ended.recv()).await.is_err() {
        tracing::warn!("connections still open after the request timeout were closed");
    }
    Ok(())
}

/// One accepted connection and what it needs to serve itself.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    tracked: Arc<Tracked>,
    registry: Arc<Registry>,
    stop_signal: watch::Receiver<bool>,
    limits: HttpLimits,
    _alive: mpsc::Sender<()>,
}

impl Connection {
    async fn run(self) {
        let mut stop_signal = self.stop_signal.clone();
        let first_byte = self.first_byte();
        // Shed, or the server stopping, before a first byte: nothing to finish.
        let arrived = tokio::select! {
            arrived = first_byte => arrived,
            () = self.tracked.close.notified() => false,
            _ = stop_signal.wait_for(|stopping| *stopping) => false,
        };
        let (registry, id) = (self.registry.clone(), self.tracked.id);
        if arrived {
            self.serve().await;
        }
        registry.remove(id);
    }

    /// Waits for the client's first byte, at most the first-byte timeout.
    async fn first_byte(&self) -> bool {
        let mut byte = [0u8; 1];
        matches!(tokio::time::timeout(self.limits.first_byte_timeout, self.stream.peek(&mut byte)).await, Ok(Ok(1..)))
    }

    async fn serve(self) {
        let Connection { stream, peer, app, builder, tracked, mut stop_signal, limits, .. } = self;
        let activity = tracked.clone();
        let service = app
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                request
            })
            .map_future(move |response| {
                let busy = InFlight::start(activity.clone());
                async move {
                    let response = response.await;
                    drop(busy);
                    response
                }
            });
        let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let mut connection = std::pin::pin!(connection);
        // Once told to close, a connection gets a grace period, then is
        // dropped: an HTTP/2 peer that never answers the closing PING would
        // otherwise hold it open.
        let mut close_with_grace = stop_signal.borrow().then_some(limits.request_timeout);
        let mut force_at: Option<tokio::time::Instant> = None;
        loop {
            if let Some(grace) = close_with_grace.take() {
                connection.as_mut().graceful_shutdown();
                force_at = Some(tokio::time::Instant::now() + grace);
            }
            let closing = force_at.is_some();
            let forced = async {
                match force_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    return;
                }
                () = forced => return,
                () = tracked.close.notified(), if !closing => close_with_grace = Some(IDLE_CLOSE_GRACE),
                _ = stop_signal.changed(), if !closing => close_with_grace = Some(limits.request_timeout),
                () = tokio::time::sleep(limits.idle_timeout / 4), if !closing => {
                    if tracked.idle_for(&limits.idle_timeout) {
                        close_with_grace = Some(IDLE_CLOSE_GRACE);
                    }
                }
            }
        }
    }
}

/// How long an idle connection told to close may take to say goodbye.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The open connections, for the cap and for choosing whom to shed.
struct Registry {
    open: Mutex<HashMap<u64, Arc<Tracked>>>,
    next_id: AtomicU64,
    cap: usize,
    epoch: Instant,
}

/// What the registry knows of one connection.
struct Tracked {
    id: u64,
    /// Milliseconds since the registry's epoch of the connection's opening or
    /// its last request's end.
    last_active: AtomicU64,
    in_flight: AtomicUsize,
    epoch: Instant,
    close: Notify,
}

impl Tracked {
    fn touch(&self) {
        self.last_active.store(millis_since(self.epoch), Ordering::Relaxed);
    }

    fn idle_since(&self) -> Option<u64> {
        (self.in_flight.load(Ordering::Relaxed) == 0).then(|| self.last_active.load(Ordering::Relaxed))
    }

    fn idle_for(&self, timeout: &Duration) -> bool {
        self.idle_since()
            .is_some_and(|since| millis_since(self.epoch).saturating_sub(since) >= timeout.as_millis() as u64)
    }
}

fn millis_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

impl Registry {
    fn new(cap: usize) -> Self {
        Self { open: Mutex::new(HashMap::new()), next_id: AtomicU64::new(0), cap: cap.max(1), epoch: Instant::now() }
    }

    /// Registers a new connection. At the cap, the connection idle the
    /// longest is told to close to make room; when none is idle, `None`.
    fn admit(&self) -> Option<Arc<Tracked>> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if open.len() >= self.cap {
            let victim = open.values().filter_map(|t| t.idle_since().map(|since| (since, t.id))).min()?.1;
            // Out of the count now, so that one shed makes room for one.
            if let Some(victim) = open.remove(&victim) {
                victim.close.notify_one();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tracked = Arc::new(Tracked {
            id,
            last_active: AtomicU64::new(millis_since(self.epoch)),
            in_flight: AtomicUsize::new(0),
            epoch: self.epoch,
            close: Notify::new(),
        });
        open.insert(id, tracked.clone());
        Some(tracked)
    }

    fn remove(&self, id: u64) {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&id);
    }
}

/// A request being served on a connection: the connection is not idle
/// until it is dropped (also when the request is abandoned midway).
struct InFlight {
    tracked: Arc<Tracked>,
}

impl InFlight {
    /// No clock read here: a connection with a request in flight is not
    /// idle whatever its last activity says; the end of the request stamps it.
    fn start(tracked: Arc<Tracked>) -> Self {
        tracked.in_flight.fetch_add(1, Ordering::Relaxed);
        Self { tracked }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.tracked.touch();
        self.tracked.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Per-connection errors (the peer went away) need nothing; running out of
/// file descriptors does: wait for some to close instead of spinning.
async fn pause_after_accept_error(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(%error, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_longest_idle_connection_is_shed_and_busy_ones_are_kept() {
        let registry = Registry::new(2);
        let first = registry.admit().unwrap();
        let second = registry.admit().unwrap();
        first.last_active.store(10, Ordering::Relaxed);
        second.last_active.store(5, Ordering::Relaxed);
        let _busy = InFlight::start(second.clone());
        let third = registry.admit().expect("an idle connection makes room");
        let open = registry.open.lock().unwrap();
        assert!(!open.contains_key(&first.id), "the idle one is shed, not the busy one idle for longer");
        assert!(open.contains_key(&second.id) && open.contains_key(&third.id));
        drop(open);
        let _also_busy = InFlight::start(third.clone());
        assert!(registry.admit().is_none(), "every connection busy: the newcomer is refused");
    }
}

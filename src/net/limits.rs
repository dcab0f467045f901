//! Connection limits shared by every listener: a [`Gate`] that caps the open connections of
//! one listener, the header-read and idle timeouts of each connection ([`Conn::deadline`]),
//! and [`accept`], an accept loop that neither spins on `EMFILE` nor floods the log.
//!
//! The cap does not make new clients wait behind abusive ones: when it is reached, the
//! connection that has been idle longest (no request in progress: a silent socket, half a
//! request header, a keep-alive connection between requests) is closed to admit the new one,
//! as nginx reuses its idle connections when `worker_connections` run out. Only when every
//! connection is busy does accepting pause until one closes. Either way one line is logged,
//! at most once a minute, with how often it happened in between.
//!
//! A connection's time is measured by its own task (the timer of [`Conn::deadline`]) from
//! marks the listener's protocol sets: [`Conn::begin`] while a request is handled (the guard
//! ends it), [`TrackedIo`] when bytes of the next request arrive.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Default [`Limits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default [`Limits::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`Limits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`Limits::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// File descriptors kept for everything that is not a client connection (the database and its
/// WAL, job logs, consoles, TFTP transfers, child processes) when the connection cap is fitted
/// to the process's `RLIMIT_NOFILE`.
pub const FD_RESERVE: u64 = 256;
/// How often at most a limit being hit is logged.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// The limits of one listener (from `[http]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long a client may take to send a whole request header: from accepting its
    /// connection, or from the first byte of a later request on a kept-alive connection.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// After shutdown begins, how long requests in flight may take before their
    /// connections are closed.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// The connection cap that fits a soft `RLIMIT_NOFILE` of `soft` descriptors, keeping
/// [`FD_RESERVE`] for the rest of the appliance (at least 16 connections).
pub fn fit_to_fd_limit(max_connections: usize, soft: u64) -> usize {
    let room = usize::try_from(soft.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    max_connections.min(room.max(16))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (systemd's `LimitNOFILE=` sets both; a
/// shell often leaves the soft one at 1024) and returns the soft limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

/// Lets an event through at most once per period, counting the ones held back.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    /// At most once per `every`.
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            held: 0,
        }
    }

    /// Records one event at `now`: `Some(n)` when it should be reported, `n` being how many
    /// were held back since the last report; `None` when it is held back.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

/// What [`Conn::deadline`] decides from: one connection's marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    /// When it was accepted.
    pub accepted: Instant,
    /// Whether a request is in progress (or the connection was handed to an upgrade).
    pub busy: bool,
    /// Whether a request was ever handled on it.
    pub served: bool,
    /// When the last request ended.
    pub idle_since: Instant,
    /// When the first byte of the next request arrived, if one did.
    pub reading_since: Option<Instant>,
}

/// When a connection with `marks` is closed if nothing changes: never while busy; a new
/// connection `header_timeout` after it was accepted; a kept-alive one `header_timeout` after
/// the next request began arriving, else `idle_timeout` after the last one ended.
pub fn deadline(marks: &Marks, limits: &Limits) -> Option<Instant> {
    if marks.busy {
        None
    } else if !marks.served {
        Some(marks.accepted + limits.header_timeout)
    } else if let Some(reading) = marks.reading_since {
        Some(reading + limits.header_timeout)
    } else {
        Some(marks.idle_since + limits.idle_timeout)
    }
}

/// The connections of one listener and their cap. Clones share it.
#[derive(Debug, Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The listener's name in log lines (`HTTP API`, …).
    name: &'static str,
    limits: Limits,
    epoch: Instant,
    table: Mutex<Table>,
    /// Signalled when a connection closes.
    freed: tokio::sync::Notify,
    /// The cap being hit.
    cap_log: Mutex<Throttle>,
    /// Accepting failing (`EMFILE` …).
    accept_log: Mutex<Throttle>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Arc<Shared>>,
    /// Connections told to close that have not closed yet: they no longer count.
    closing: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Gate {
    /// The gate of the listener `name` with `limits`.
    pub fn new(name: &'static str, limits: Limits) -> Gate {
        Gate {
            inner: Arc::new(Inner {
                name,
                limits,
                epoch: Instant::now(),
                table: Mutex::new(Table::default()),
                freed: tokio::sync::Notify::new(),
                cap_log: Mutex::new(Throttle::new(LOG_EVERY)),
                accept_log: Mutex::new(Throttle::new(LOG_EVERY)),
            }),
        }
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        lock(&self.inner.table).open.len()
    }

    /// Admits one new connection: at once below the cap; at the cap by closing the
    /// longest-idle connection; when every connection is busy, once one closes.
    pub async fn admit(&self) -> Arc<Conn> {
        loop {
            let freed = self.inner.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(conn) = self.try_admit() {
                return conn;
            }
            freed.await;
        }
    }

    /// Admits one new connection if there is room or an idle connection to close.
    fn try_admit(&self) -> Option<Arc<Conn>> {
        let mut table = lock(&self.inner.table);
        let max = self.inner.limits.max_connections;
        let counted = table.open.len().saturating_sub(table.closing);
        if counted >= max {
            let Some(victim) = longest_idle(&table) else {
                self.report_cap(false);
                return None;
            };
            victim.close();
            table.closing += 1;
            self.report_cap(true);
        }
        let id = table.next_id;
        table.next_id += 1;
        let shared = Arc::new(Shared {
            epoch: self.inner.epoch,
            accepted: Instant::now(),
            busy: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            detached: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            reading_since: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            close: CancellationToken::new(),
            changed: tokio::sync::Notify::new(),
        });
        table.open.insert(id, Arc::clone(&shared));
        Some(Arc::new(Conn {
            id,
            gate: Arc::downgrade(&self.inner),
            s: shared,
        }))
    }

    /// Closes the longest-idle connection, if any (a file descriptor is needed now).
    fn close_one_idle(&self) -> bool {
        let mut table = lock(&self.inner.table);
        match longest_idle(&table) {
            Some(victim) => {
                victim.close();
                table.closing += 1;
                true
            }
            None => false,
        }
    }

    fn report_cap(&self, closed_idle: bool) {
        let Some(held) = lock(&self.inner.cap_log).hit(Instant::now()) else {
            return;
        };
        let max = self.inner.limits.max_connections;
        if closed_idle {
            tracing::warn!(
                listener = self.inner.name,
                max_connections = max,
                since_last_report = held,
                "connection limit reached: closing the longest-idle connection to admit each \
                 new one (raise [http] max_connections if these are real clients)"
            );
        } else {
            tracing::warn!(
                listener = self.inner.name,
                max_connections = max,
                since_last_report = held,
                "connection limit reached and every connection is busy: new connections wait \
                 until one closes"
            );
        }
    }

    fn release(&self, id: u64, was_closing: bool) {
        let mut table = lock(&self.inner.table);
        table.open.remove(&id);
        if was_closing {
            table.closing = table.closing.saturating_sub(1);
        }
        drop(table);
        self.inner.freed.notify_one();
    }
}

/// The idle connection that became idle first (not yet closing), if any.
fn longest_idle(table: &Table) -> Option<&Shared> {
    table
        .open
        .values()
        .filter(|c| c.is_idle() && !c.closing.load(Ordering::Acquire))
        .min_by_key(|c| c.idle_start())
        .map(|c| &**c)
}

/// One admitted connection: its marks, and the signal that closes it. Dropping the last
/// handle gives its place back to the [`Gate`].
#[derive(Debug)]
pub struct Conn {
    id: u64,
    gate: Weak<Inner>,
    s: Arc<Shared>,
}

/// What the [`Gate`]'s table and the connection's handles share. The table holds this, not
/// the [`Conn`], so nothing the table drops under its lock gives a place back.
#[derive(Debug)]
struct Shared {
    epoch: Instant,
    accepted: Instant,
    busy: AtomicUsize,
    served: AtomicBool,
    /// Handed over (an upgraded HTTP connection): nobody times it out or closes it here.
    detached: AtomicBool,
    /// Nanoseconds after `epoch` (0: never).
    idle_since: AtomicU64,
    /// Nanoseconds after `epoch` (0: no byte of a next request yet).
    reading_since: AtomicU64,
    closing: AtomicBool,
    close: CancellationToken,
    changed: tokio::sync::Notify,
}

impl Shared {
    fn nanos(&self, at: Instant) -> u64 {
        // Never 0, which means "unset".
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn instant(&self, nanos: u64) -> Option<Instant> {
        (nanos != 0).then(|| self.epoch + Duration::from_nanos(nanos))
    }

    fn is_idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0 && !self.detached.load(Ordering::Acquire)
    }

    fn idle_start(&self) -> Instant {
        self.instant(self.idle_since.load(Ordering::Acquire))
            .unwrap_or(self.accepted)
    }

    fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.close.cancel();
    }
}

impl Conn {
    /// Marks a request in progress until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.s.busy.fetch_add(1, Ordering::AcqRel);
        self.s.changed.notify_one();
        Busy {
            conn: Arc::clone(self),
        }
    }

    /// Records that bytes arrived (of the next request, if none is in progress).
    pub fn on_read(&self) {
        let s = &self.s;
        if s.busy.load(Ordering::Acquire) == 0 && s.reading_since.load(Ordering::Acquire) == 0 {
            s.reading_since
                .store(s.nanos(Instant::now()), Ordering::Release);
            s.changed.notify_one();
        }
    }

    /// No request in progress and not handed over.
    pub fn is_idle(&self) -> bool {
        self.s.is_idle()
    }

    /// The current marks.
    pub fn marks(&self) -> Marks {
        let s = &self.s;
        Marks {
            accepted: s.accepted,
            busy: !s.is_idle(),
            served: s.served.load(Ordering::Acquire),
            idle_since: s.idle_start(),
            reading_since: s.instant(s.reading_since.load(Ordering::Acquire)),
        }
    }

    /// When this connection is closed for taking too long, if nothing changes before.
    pub fn deadline(&self) -> Option<Instant> {
        let limits = self.gate.upgrade().map(|g| g.limits).unwrap_or_default();
        deadline(&self.marks(), &limits)
    }

    /// Whether its deadline has passed.
    pub fn expired(&self) -> bool {
        self.deadline().is_some_and(|d| d <= Instant::now())
    }

    /// Resolves when something that moves the deadline happened.
    pub async fn changed(&self) {
        self.s.changed.notified().await;
    }

    /// Resolves when the gate closes this connection to admit another.
    pub async fn closed(&self) {
        self.s.close.cancelled().await;
    }

    /// The connection was handed over (an HTTP upgrade): it is not timed out or closed here
    /// any more, though it keeps its place until its socket is dropped.
    pub fn detach(&self) {
        self.s.detached.store(true, Ordering::Release);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(inner) = self.gate.upgrade() {
            Gate { inner }.release(self.id, self.s.closing.load(Ordering::Acquire));
        }
    }
}

/// A request in progress on a [`Conn`] ([`Conn::begin`]).
#[derive(Debug)]
pub struct Busy {
    conn: Arc<Conn>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let s = &self.conn.s;
        s.served.store(true, Ordering::Release);
        s.idle_since
            .store(s.nanos(Instant::now()), Ordering::Release);
        s.reading_since.store(0, Ordering::Release);
        s.busy.fetch_sub(1, Ordering::AcqRel);
        s.changed.notify_one();
    }
}

/// A socket that tells its [`Conn`] when bytes arrive, and holds the connection's place in
/// its [`Gate`] for as long as the socket is open.
#[derive(Debug)]
pub struct TrackedIo<T> {
    inner: T,
    conn: Arc<Conn>,
}

impl<T> TrackedIo<T> {
    /// Wraps `inner`, admitted as `conn`.
    pub fn new(inner: T, conn: Arc<Conn>) -> Self {
        TrackedIo { inner, conn }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.on_read();
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Whether accepting failed for want of resources (descriptors, buffers), which retrying at
/// once cannot fix.
fn out_of_resources(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOBUFS | libc_errno::ENOMEM)
    )
}

/// The errno values [`accept`] tells apart (Linux numbering, which every target of lavabox
/// shares).
mod libc_errno {
    pub const ENOMEM: i32 = 12;
    pub const ENFILE: i32 = 23;
    pub const EMFILE: i32 = 24;
    pub const ENOBUFS: i32 = 105;
}

/// How long accepting pauses after running out of descriptors when no connection closes.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts and admits the next connection of `listener` through `gate`. Errors that concern
/// one client (it reset before we accepted) are skipped; running out of descriptors closes
/// the longest-idle connection and waits for a place to free (at most a second) instead of
/// retrying at once, and is logged at most once a minute.
pub async fn accept(listener: &TcpListener, gate: &Gate) -> (TcpStream, SocketAddr, Arc<Conn>) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let conn = gate.admit().await;
                return (tcp, peer, conn);
            }
            Err(err) if out_of_resources(&err) => {
                let freed = gate.inner.freed.notified();
                let closed = gate.close_one_idle();
                if let Some(held) = lock(&gate.inner.accept_log).hit(Instant::now()) {
                    tracing::error!(
                        listener = gate.inner.name,
                        error = %err,
                        open = gate.open(),
                        closed_an_idle_connection = closed,
                        since_last_report = held,
                        "cannot accept connections: out of file descriptors (raise LimitNOFILE \
                         or lower [http] max_connections); pausing accepts"
                    );
                }
                let _ = tokio::time::timeout(ACCEPT_BACKOFF, freed).await;
            }
            Err(err) => {
                // ECONNABORTED and friends: that client is gone, the next one is not.
                tracing::debug!(listener = gate.inner.name, error = %err, "accept failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize) -> Limits {
        Limits {
            max_connections: max,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
        }
    }

    #[test]
    fn deadlines_follow_the_connection_phase() {
        let l = limits(4);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let fresh = Marks {
            accepted: t0,
            busy: false,
            served: false,
            idle_since: t0,
            reading_since: Some(t0 + s(5)),
        };
        // A new connection has header_timeout from accept, however slowly its bytes come.
        assert_eq!(deadline(&fresh, &l), Some(t0 + s(10)));
        assert_eq!(
            deadline(
                &Marks {
                    busy: true,
                    ..fresh
                },
                &l
            ),
            None
        );
        let kept = Marks {
            served: true,
            idle_since: t0 + s(100),
            reading_since: None,
            ..fresh
        };
        assert_eq!(deadline(&kept, &l), Some(t0 + s(160)));
        let next = Marks {
            reading_since: Some(t0 + s(130)),
            ..kept
        };
        assert_eq!(deadline(&next, &l), Some(t0 + s(140)));
    }

    #[test]
    fn throttle_reports_once_per_period_with_the_count_held_back() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(60));
        assert_eq!(t.hit(t0), Some(0));
        assert_eq!(t.hit(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.hit(t0 + Duration::from_secs(59)), None);
        assert_eq!(t.hit(t0 + Duration::from_secs(60)), Some(2));
        assert_eq!(t.hit(t0 + Duration::from_secs(61)), None);
    }

    #[test]
    fn the_cap_fits_the_descriptor_limit() {
        assert_eq!(fit_to_fd_limit(1024, 4096), 1024);
        assert_eq!(fit_to_fd_limit(1024, 1024), 768);
        assert_eq!(fit_to_fd_limit(1024, 100), 16);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_idle_connection_makes_room() {
        let gate = Gate::new("test", limits(2));
        let a = gate.admit().await;
        tokio::time::advance(Duration::from_secs(1)).await;
        let b = gate.admit().await;
        let busy_b = b.begin();
        let c = gate.admit().await;
        // `a` (idle) was told to close, `b` (busy) was not.
        assert!(a.s.close.is_cancelled());
        assert!(!b.s.close.is_cancelled());
        drop(a);
        assert_eq!(gate.open(), 2);
        // Both busy now: the next admission waits until one closes.
        let busy_c = c.begin();
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit().await }
        });
        tokio::time::advance(Duration::from_secs(1)).await;
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(busy_c);
        drop(c);
        let d = waiting.await.unwrap();
        assert_eq!(gate.open(), 2);
        drop((busy_b, b, d));
        assert_eq!(gate.open(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_ending_starts_the_idle_timeout() {
        let gate = Gate::new("test", limits(2));
        let conn = gate.admit().await;
        let accepted = Instant::now();
        assert_eq!(conn.deadline(), Some(accepted + Duration::from_secs(10)));
        let busy = conn.begin();
        assert_eq!(conn.deadline(), None);
        tokio::time::advance(Duration::from_secs(30)).await;
        drop(busy);
        assert_eq!(conn.deadline(), Some(accepted + Duration::from_secs(90)));
        tokio::time::advance(Duration::from_secs(5)).await;
        conn.on_read();
        assert_eq!(conn.deadline(), Some(accepted + Duration::from_secs(45)));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(conn.expired());
    }
}

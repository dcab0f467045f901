//! The TFTP server: a receive loop on the well-known socket and one task per transfer.
//!
//! The loop only decodes requests and answers the ones it refuses outright (writes,
//! malformed packets); every read request gets its own task and its own ephemeral socket
//! (the transfer ID of RFC 1350). A transfer is lock-step: send a block, wait for its ACK,
//! retransmit on timeout at most `max_retries` times. Path checks happen before any file
//! is opened; files are read through `tokio::fs` so nothing blocks the runtime.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::fs::File;
use tokio::io::{AsyncReadExt, BufReader};
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use super::packet::{
    self, DEFAULT_BLKSIZE, ErrorCode, MAX_BLKSIZE, MIN_BLKSIZE, Mode, Packet, Request, TftpOption,
};
use super::{Error, Result};

/// Receive buffer size: the largest UDP payload, so no request is ever truncated.
const MAX_DATAGRAM: usize = 65536;
/// Retransmission timeout unless the client negotiates `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Retransmissions of one packet before a transfer is abandoned.
const DEFAULT_RETRIES: u32 = 5;
/// Concurrent transfers; further requests are told the server is busy.
const DEFAULT_MAX_TRANSFERS: usize = 64;
/// Consecutive receive failures on the listening socket before `run` gives up.
const MAX_SOCKET_FAILURES: u32 = 10;
/// File read-ahead, so small blocks do not each cost a blocking-pool round trip.
const READ_BUFFER: usize = 64 * 1024;

/// A bound, read-only TFTP server serving one root directory.
///
/// ```no_run
/// # async fn demo() -> lavabox::tftp::Result<()> {
/// let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 69));
/// let server = lavabox::tftp::Server::bind(addr, "/srv/tftp").await?;
/// server.run(tokio::signal::ctrl_c()).await
/// # }
/// ```
#[derive(Debug)]
pub struct Server {
    /// The well-known socket requests arrive on.
    socket: UdpSocket,
    /// Canonical root: every served file must canonicalize to a path below it.
    root: Arc<Path>,
    /// Timeouts and limits shared by every transfer.
    settings: Settings,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    timeout: Duration,
    max_retries: u32,
    max_transfers: usize,
}

impl Server {
    /// Bind the listening socket on `addr` and check `root` is a directory.
    ///
    /// Port 69 is what bootloaders use and needs root (or `CAP_NET_BIND_SERVICE`);
    /// tests bind port 0 and read [`Server::local_addr`].
    pub async fn bind(addr: SocketAddr, root: impl AsRef<Path>) -> Result<Server> {
        let given = root.as_ref().to_path_buf();
        let canonical = tokio::fs::canonicalize(&given)
            .await
            .map_err(|source| Error::Root {
                path: given.clone(),
                source,
            })?;
        let metadata = tokio::fs::metadata(&canonical)
            .await
            .map_err(|source| Error::Root {
                path: given.clone(),
                source,
            })?;
        if !metadata.is_dir() {
            return Err(Error::Root {
                path: given,
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        Ok(Server {
            socket,
            root: Arc::from(canonical),
            settings: Settings {
                timeout: DEFAULT_TIMEOUT,
                max_retries: DEFAULT_RETRIES,
                max_transfers: DEFAULT_MAX_TRANSFERS,
            },
        })
    }

    /// Set the retransmission timeout used when a client does not negotiate one (default 1 s).
    pub fn with_retransmit_timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Set how often one packet is retransmitted before a transfer is abandoned (default 5).
    pub fn with_max_retries(mut self, retries: u32) -> Self {
        self.settings.max_retries = retries;
        self
    }

    /// Set the number of concurrent transfers (default 64); more requests get a "busy" error.
    pub fn with_max_transfers(mut self, transfers: usize) -> Self {
        self.settings.max_transfers = transfers;
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.socket.local_addr().map_err(Error::Socket)
    }

    /// The canonical root directory files are served from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Serve requests until `shutdown` completes, then stop every transfer (each client
    /// gets an error packet) and return once they have all ended.
    ///
    /// Only a listening socket that keeps failing ends `run` with an error; a failing
    /// transfer is logged and never affects the others.
    pub async fn run(self, shutdown: impl Future) -> Result<()> {
        let local = self.local_addr()?;
        let local_ip = local.ip();
        info!(addr = %local, root = %self.root.display(), "tftp server listening");
        // Transfers watch this channel; dropping the sender tells them to stop.
        let (stop_tx, stop_rx) = watch::channel(());
        let permits = Arc::new(Semaphore::new(self.settings.max_transfers));
        let active = ActivePeers::default();
        let mut transfers = JoinSet::new();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut failures = 0u32;
        tokio::pin!(shutdown);
        let outcome = loop {
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                Some(joined) = transfers.join_next(), if !transfers.is_empty() => {
                    if let Err(e) = joined {
                        warn!(error = %e, "tftp transfer task failed");
                    }
                }
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, peer)) => {
                        failures = 0;
                        let Some(datagram) = buf.get(..len) else { continue };
                        if let Some((request, permit)) = self.screen(datagram, peer, &permits, &active).await {
                            let transfer = Transfer {
                                peer,
                                local_ip,
                                root: Arc::clone(&self.root),
                                settings: self.settings,
                                stop: stop_rx.clone(),
                            };
                            let span = info_span!("tftp", %peer, file = %request.filename);
                            let claim = active.claim(peer);
                            transfers.spawn(
                                async move {
                                    transfer.serve(request, claim).await;
                                    drop(permit);
                                }
                                .instrument(span),
                            );
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        if failures >= MAX_SOCKET_FAILURES {
                            break Err(Error::Socket(e));
                        }
                        warn!(error = %e, failures, "tftp receive failed");
                        // Back off so a persistent failure does not spin: 2, 4, 8, … ms.
                        tokio::time::sleep(Duration::from_millis(1 << failures)).await;
                    }
                }
            }
        };
        drop(stop_tx);
        while let Some(joined) = transfers.join_next().await {
            if let Err(e) = joined {
                warn!(error = %e, "tftp transfer task failed");
            }
        }
        info!("tftp server stopped");
        outcome
    }

    /// Decide what to do with a datagram on the well-known port: a read request that may
    /// start (with its concurrency permit), or nothing after answering it here.
    async fn screen(
        &self,
        datagram: &[u8],
        peer: SocketAddr,
        permits: &Arc<Semaphore>,
        active: &ActivePeers,
    ) -> Option<(Request, tokio::sync::OwnedSemaphorePermit)> {
        match Packet::decode(datagram) {
            // A client that retransmits its request before our first reply arrived (U-Boot
            // does after a second) must not get a second transfer from a second port.
            Ok(Packet::Rrq(request)) if active.contains(peer) => {
                debug!(%peer, file = %request.filename, "duplicate tftp request ignored");
                None
            }
            Ok(Packet::Rrq(request)) => match Arc::clone(permits).try_acquire_owned() {
                Ok(permit) => Some((request, permit)),
                Err(_) => {
                    warn!(%peer, file = %request.filename, "tftp server busy, request refused");
                    self.reply_error(peer, ErrorCode::NotDefined, "server busy, try again later")
                        .await;
                    None
                }
            },
            Ok(Packet::Wrq(request)) => {
                info!(%peer, file = %request.filename, "tftp write request refused");
                self.reply_error(
                    peer,
                    ErrorCode::AccessViolation,
                    "access violation: this TFTP server is read-only",
                )
                .await;
                None
            }
            // An error is never answered, or two peers could bounce errors forever.
            Ok(Packet::Error { .. }) => None,
            Ok(other) => {
                debug!(%peer, packet = ?other, "tftp packet outside a transfer");
                self.reply_error(peer, ErrorCode::IllegalOperation, "illegal TFTP operation")
                    .await;
                None
            }
            Err(e) => {
                debug!(%peer, error = %e, "malformed tftp request");
                self.reply_error(
                    peer,
                    ErrorCode::IllegalOperation,
                    &format!("illegal TFTP operation: {e}"),
                )
                .await;
                None
            }
        }
    }

    async fn reply_error(&self, peer: SocketAddr, code: ErrorCode, message: &str) {
        let packet = Packet::Error {
            code,
            message: message.to_owned(),
        };
        if let Err(e) = self.socket.send_to(&packet.encode(), peer).await {
            debug!(%peer, error = %e, "sending tftp error failed");
        }
    }
}

/// Clients with a transfer in progress, keyed by their transfer ID (address and port).
#[derive(Debug, Default, Clone)]
struct ActivePeers(Arc<Mutex<HashSet<SocketAddr>>>);

impl ActivePeers {
    fn contains(&self, peer: SocketAddr) -> bool {
        self.lock().contains(&peer)
    }

    /// Record `peer` as busy until the returned claim is dropped.
    fn claim(&self, peer: SocketAddr) -> PeerClaim {
        self.lock().insert(peer);
        PeerClaim {
            peers: self.clone(),
            peer,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<SocketAddr>> {
        // The set stays consistent even if a holder panicked: every operation is one call.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Drop guard of [`ActivePeers::claim`]: removes the peer from the set.
struct PeerClaim {
    peers: ActivePeers,
    peer: SocketAddr,
}

impl Drop for PeerClaim {
    fn drop(&mut self) {
        self.peers.lock().remove(&self.peer);
    }
}

/// Why a transfer ended early.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The request was refused; the client got this error packet.
    #[error("refused ({}): {message}", code.code())]
    Refused { code: ErrorCode, message: String },
    /// The client sent an error packet.
    #[error("client aborted ({}): {message}", code.code())]
    Aborted { code: ErrorCode, message: String },
    /// The client sent something other than the expected ACK.
    #[error("protocol violation by client: {0}")]
    Protocol(String),
    /// The client stopped answering.
    #[error("no ACK for block {block} after {retries} retransmissions")]
    TimedOut { block: u16, retries: u32 },
    /// The server is shutting down.
    #[error("server shutting down")]
    Stopped,
    /// A socket or file operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Everything one transfer task needs, detached from the [`Server`].
struct Transfer {
    peer: SocketAddr,
    local_ip: IpAddr,
    root: Arc<Path>,
    settings: Settings,
    stop: watch::Receiver<()>,
}

impl Transfer {
    async fn serve(self, request: Request, claim: PeerClaim) {
        let started = Instant::now();
        let socket = match UdpSocket::bind(SocketAddr::new(self.local_ip, 0)).await {
            Ok(socket) => socket,
            Err(e) => {
                warn!(error = %e, "binding a tftp transfer socket failed");
                return;
            }
        };
        let mut session = Session {
            socket,
            peer: self.peer,
            timeout: self.settings.timeout,
            max_retries: self.settings.max_retries,
            stop: self.stop,
            buf: vec![0u8; MAX_DATAGRAM],
            claim: Some(claim),
        };
        match session.send_file(&self.root, &request).await {
            Ok(bytes) => info!(
                bytes,
                mode = %request.mode,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "tftp transfer complete"
            ),
            Err(failure @ (Failure::Refused { .. } | Failure::Stopped)) => {
                info!(reason = %failure, "tftp transfer not served")
            }
            Err(failure) => warn!(reason = %failure, "tftp transfer failed"),
        }
    }
}

/// The live state of one transfer: its own socket and the client's transfer ID.
struct Session {
    socket: UdpSocket,
    peer: SocketAddr,
    timeout: Duration,
    max_retries: u32,
    stop: watch::Receiver<()>,
    buf: Vec<u8>,
    /// Marks the client as served until its first ACK shows it got our reply; after
    /// that, a request from the same port is a new transfer, not a retransmission.
    claim: Option<PeerClaim>,
}

impl Session {
    /// Serve `request` from below `root`; returns the number of payload bytes sent.
    async fn send_file(&mut self, root: &Path, request: &Request) -> Result<u64, Failure> {
        if request.mode == Mode::Mail {
            return Err(self
                .refuse(ErrorCode::IllegalOperation, "mail mode is not supported")
                .await);
        }
        let (path, size) = match resolve(root, &request.filename).await {
            Ok(found) => found,
            Err(refusal) => return Err(self.refuse(refusal.code, refusal.message).await),
        };
        let file = match File::open(&path).await {
            Ok(file) => file,
            Err(e) => {
                let refusal = Refusal::from_io(&e);
                return Err(self.refuse(refusal.code, refusal.message).await);
            }
        };
        let negotiated = negotiate(&request.options, request.mode, size, self.timeout);
        self.timeout = negotiated.timeout;
        if !negotiated.reply.is_empty() {
            let oack = Packet::Oack {
                options: negotiated.reply,
            };
            self.exchange(&oack.encode(), 0).await?;
        }

        let blksize = usize::from(negotiated.blksize);
        let mut reader = BlockReader::new(file, request.mode);
        let mut block: u16 = 1;
        let mut sent: u64 = 0;
        let mut packet = Vec::with_capacity(4 + blksize);
        loop {
            packet.clear();
            packet.extend_from_slice(&packet::data_header(block));
            if let Err(e) = reader.fill(&mut packet, blksize).await {
                self.send_error(ErrorCode::NotDefined, "read error on the server")
                    .await;
                return Err(Failure::Io(e));
            }
            let len = packet.len() - 4;
            self.exchange(&packet, block).await?;
            sent += len as u64;
            if len < blksize {
                return Ok(sent);
            }
            // Past block 65535 the number rolls over to 0, as tftp-hpa, curl and U-Boot expect.
            block = block.wrapping_add(1);
        }
    }

    /// Send `packet` and wait for the ACK of `block`, retransmitting on timeout.
    async fn exchange(&mut self, packet: &[u8], block: u16) -> Result<(), Failure> {
        let mut retries = 0;
        loop {
            self.socket.send_to(packet, self.peer).await?;
            let deadline = Instant::now() + self.timeout;
            loop {
                let received = tokio::select! {
                    _ = self.stop.changed() => {
                        self.send_error(ErrorCode::NotDefined, "server shutting down").await;
                        return Err(Failure::Stopped);
                    }
                    _ = tokio::time::sleep_until(deadline) => None,
                    received = self.socket.recv_from(&mut self.buf) => Some(received?),
                };
                let Some((len, from)) = received else { break };
                if from != self.peer {
                    // RFC 1350: a foreign transfer ID gets error 5; the transfer goes on.
                    let reply = Packet::Error {
                        code: ErrorCode::UnknownTransferId,
                        message: "unknown transfer ID".into(),
                    };
                    if let Err(e) = self.socket.send_to(&reply.encode(), from).await {
                        debug!(%from, error = %e, "sending tftp error failed");
                    }
                    continue;
                }
                let Some(datagram) = self.buf.get(..len) else {
                    continue;
                };
                match Packet::decode(datagram) {
                    Ok(Packet::Ack { block: acked }) if acked == block => {
                        self.claim = None;
                        return Ok(());
                    }
                    // A duplicate ACK of an earlier block: never retransmit on it, or both
                    // sides would double every packet (the Sorcerer's Apprentice bug).
                    Ok(Packet::Ack { .. }) => continue,
                    Ok(Packet::Error { code, message }) => {
                        return Err(Failure::Aborted { code, message });
                    }
                    Ok(other) => {
                        self.send_error(ErrorCode::IllegalOperation, "illegal TFTP operation")
                            .await;
                        return Err(Failure::Protocol(format!("unexpected {other:?}")));
                    }
                    Err(e) => {
                        self.send_error(ErrorCode::IllegalOperation, "illegal TFTP operation")
                            .await;
                        return Err(Failure::Protocol(e.to_string()));
                    }
                }
            }
            if retries >= self.max_retries {
                return Err(Failure::TimedOut { block, retries });
            }
            retries += 1;
            debug!(block, retries, "tftp retransmit");
        }
    }

    async fn refuse(&mut self, code: ErrorCode, message: &str) -> Failure {
        self.send_error(code, message).await;
        Failure::Refused {
            code,
            message: message.to_owned(),
        }
    }

    async fn send_error(&mut self, code: ErrorCode, message: &str) {
        let packet = Packet::Error {
            code,
            message: message.to_owned(),
        };
        if let Err(e) = self.socket.send_to(&packet.encode(), self.peer).await {
            debug!(error = %e, "sending tftp error failed");
        }
    }
}

/// Options accepted for one transfer.
#[derive(Debug, PartialEq, Eq)]
struct Negotiated {
    blksize: u16,
    timeout: Duration,
    /// What goes into the OACK; empty means no OACK (plain RFC 1350 transfer).
    reply: Vec<TftpOption>,
}

/// Apply the client's options (RFC 2347–2349). Unknown, invalid and repeated options are
/// ignored, as RFC 2347 allows; the reply lists accepted options in a fixed order.
fn negotiate(options: &[TftpOption], mode: Mode, size: u64, timeout: Duration) -> Negotiated {
    let mut blksize = None;
    let mut timeout_secs = None;
    let mut tsize = false;
    for option in options {
        let value = option.value.trim();
        match option.name.to_ascii_lowercase().as_str() {
            "blksize" if blksize.is_none() => {
                if let Ok(requested) = value.parse::<u32>()
                    && requested >= u32::from(MIN_BLKSIZE)
                {
                    // A larger request is answered with the largest size we allow.
                    blksize =
                        Some(u16::try_from(requested).map_or(MAX_BLKSIZE, |b| b.min(MAX_BLKSIZE)));
                }
            }
            "timeout" if timeout_secs.is_none() => {
                if let Ok(secs) = value.parse::<u8>()
                    && secs >= 1
                {
                    timeout_secs = Some(secs);
                }
            }
            // The size of a netascii transfer is not known before it is converted.
            "tsize" if mode == Mode::Octet => tsize = true,
            _ => {}
        }
    }
    let mut reply = Vec::new();
    if let Some(b) = blksize {
        reply.push(TftpOption::new("blksize", b.to_string()));
    }
    if let Some(t) = timeout_secs {
        reply.push(TftpOption::new("timeout", t.to_string()));
    }
    if tsize {
        reply.push(TftpOption::new("tsize", size.to_string()));
    }
    Negotiated {
        blksize: blksize.unwrap_or(DEFAULT_BLKSIZE),
        timeout: timeout_secs.map_or(timeout, |t| Duration::from_secs(u64::from(t))),
        reply,
    }
}

/// A request the server refuses, with the error packet the client gets.
#[derive(Debug, PartialEq, Eq)]
struct Refusal {
    code: ErrorCode,
    message: &'static str,
}

impl Refusal {
    const NOT_FOUND: Refusal = Refusal {
        code: ErrorCode::FileNotFound,
        message: "file not found",
    };
    const OUTSIDE_ROOT: Refusal = Refusal {
        code: ErrorCode::AccessViolation,
        message: "access violation: path leaves the TFTP root",
    };

    fn from_io(e: &io::Error) -> Refusal {
        match e.kind() {
            io::ErrorKind::PermissionDenied => Refusal {
                code: ErrorCode::AccessViolation,
                message: "access violation: permission denied",
            },
            _ => Refusal::NOT_FOUND,
        }
    }
}

/// Map a requested file name to a path relative to `root`, without touching the disk.
///
/// Backslashes count as separators (some PXE clients send them). An absolute name inside
/// the root (tftp-hpa clients often send the server's full path) is made relative; any
/// other absolute name is taken relative to the root, like `tftpd -s`. `..` is refused
/// wherever it appears, even when the result would stay inside the root.
fn relative_path(root: &Path, filename: &str) -> Result<PathBuf, Refusal> {
    let normalized = filename.replace('\\', "/");
    let requested = Path::new(&normalized);
    let inside = requested.strip_prefix(root).unwrap_or(requested);
    let mut relative = PathBuf::new();
    for component in inside.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::ParentDir => return Err(Refusal::OUTSIDE_ROOT),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    if relative.as_os_str().is_empty() {
        return Err(Refusal::NOT_FOUND);
    }
    Ok(relative)
}

/// Find the regular file `filename` names below `root` (canonical), refusing symlinks
/// that lead outside it. Returns the canonical path and the file's size.
async fn resolve(root: &Path, filename: &str) -> Result<(PathBuf, u64), Refusal> {
    let relative = relative_path(root, filename)?;
    let canonical = tokio::fs::canonicalize(root.join(relative))
        .await
        .map_err(|e| Refusal::from_io(&e))?;
    if !canonical.starts_with(root) {
        return Err(Refusal::OUTSIDE_ROOT);
    }
    let metadata = tokio::fs::metadata(&canonical)
        .await
        .map_err(|e| Refusal::from_io(&e))?;
    if !metadata.is_file() {
        return Err(Refusal::NOT_FOUND);
    }
    Ok((canonical, metadata.len()))
}

/// Reads a file block by block, converting to netascii when asked.
enum BlockReader {
    Octet(BufReader<File>),
    Netascii {
        file: BufReader<File>,
        /// Converted bytes not sent yet (a conversion can overrun a block).
        pending: VecDeque<u8>,
        scratch: Vec<u8>,
        eof: bool,
    },
}

impl BlockReader {
    fn new(file: File, mode: Mode) -> Self {
        let file = BufReader::with_capacity(READ_BUFFER, file);
        match mode {
            Mode::Netascii => BlockReader::Netascii {
                file,
                pending: VecDeque::new(),
                scratch: vec![0; 4096],
                eof: false,
            },
            Mode::Octet | Mode::Mail => BlockReader::Octet(file),
        }
    }

    /// Append up to `want` bytes to `out`; fewer only at the end of the file.
    async fn fill(&mut self, out: &mut Vec<u8>, want: usize) -> io::Result<()> {
        match self {
            BlockReader::Octet(file) => {
                let start = out.len();
                out.resize(start + want, 0);
                let mut filled = 0;
                while filled < want {
                    let Some(space) = out.get_mut(start + filled..) else {
                        break;
                    };
                    let n = file.read(space).await?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                out.truncate(start + filled);
            }
            BlockReader::Netascii {
                file,
                pending,
                scratch,
                eof,
            } => {
                while pending.len() < want && !*eof {
                    let n = file.read(scratch).await?;
                    match scratch.get(..n) {
                        Some(chunk) if n > 0 => netascii_encode(chunk, pending),
                        _ => *eof = true,
                    }
                }
                let take = want.min(pending.len());
                out.extend(pending.drain(..take));
            }
        }
        Ok(())
    }
}

/// RFC 764 line ends: LF becomes CR LF and a bare CR becomes CR NUL.
fn netascii_encode(input: &[u8], out: &mut VecDeque<u8>) {
    for &byte in input {
        match byte {
            b'\n' => out.extend([b'\r', b'\n']),
            b'\r' => out.extend([b'\r', 0]),
            other => out.push_back(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let root = Path::new("/srv/tftp");
        let ok = |name: &str, expect: &str| {
            assert_eq!(
                relative_path(root, name),
                Ok(PathBuf::from(expect)),
                "{name}"
            );
        };
        ok("42/zImage", "42/zImage");
        ok("/42/zImage", "42/zImage");
        ok("./42//zImage", "42/zImage");
        ok("/srv/tftp/42/zImage", "42/zImage");
        ok("42\\zImage", "42/zImage");
        ok("/etc/passwd", "etc/passwd");
        let refused = |name: &str, expect: Refusal| {
            assert_eq!(relative_path(root, name), Err(expect), "{name}");
        };
        refused("../etc/passwd", Refusal::OUTSIDE_ROOT);
        refused("42/../../etc/passwd", Refusal::OUTSIDE_ROOT);
        refused("42/../zImage", Refusal::OUTSIDE_ROOT);
        refused("/srv/tftp/../etc/passwd", Refusal::OUTSIDE_ROOT);
        refused("..\\..\\etc\\passwd", Refusal::OUTSIDE_ROOT);
        refused("", Refusal::NOT_FOUND);
        refused("/", Refusal::NOT_FOUND);
        refused(".", Refusal::NOT_FOUND);
    }

    fn opts(pairs: &[(&str, &str)]) -> Vec<TftpOption> {
        pairs.iter().map(|(n, v)| TftpOption::new(*n, *v)).collect()
    }

    #[test]
    fn negotiates_uboot_options() {
        let got = negotiate(
            &opts(&[("timeout", "5"), ("tsize", "0"), ("blksize", "1468")]),
            Mode::Octet,
            5_448_192,
            DEFAULT_TIMEOUT,
        );
        assert_eq!(
            got,
            Negotiated {
                blksize: 1468,
                timeout: Duration::from_secs(5),
                reply: opts(&[("blksize", "1468"), ("timeout", "5"), ("tsize", "5448192")]),
            }
        );
    }

    #[test]
    fn negotiation_ignores_what_it_cannot_accept() {
        let check = |options: &[(&str, &str)], mode, blksize, reply: &[(&str, &str)]| {
            let got = negotiate(&opts(options), mode, 10, DEFAULT_TIMEOUT);
            assert_eq!(got.blksize, blksize, "{options:?}");
            assert_eq!(got.reply, opts(reply), "{options:?}");
        };
        check(&[], Mode::Octet, 512, &[]);
        check(
            &[("BLKSIZE", "1024")],
            Mode::Octet,
            1024,
            &[("blksize", "1024")],
        );
        check(&[("blksize", "7")], Mode::Octet, 512, &[]);
        check(&[("blksize", "x")], Mode::Octet, 512, &[]);
        check(
            &[("blksize", "70000")],
            Mode::Octet,
            65464,
            &[("blksize", "65464")],
        );
        check(&[("blksize", "99999999999")], Mode::Octet, 512, &[]);
        check(
            &[("blksize", "1024"), ("blksize", "2048")],
            Mode::Octet,
            1024,
            &[("blksize", "1024")],
        );
        check(&[("timeout", "0")], Mode::Octet, 512, &[]);
        check(&[("timeout", "256")], Mode::Octet, 512, &[]);
        check(&[("tsize", "0")], Mode::Netascii, 512, &[]);
        check(&[("windowsize", "4")], Mode::Octet, 512, &[]);
    }

    #[test]
    fn netascii_line_ends() {
        let mut out = VecDeque::new();
        netascii_encode(b"a\nb\rc\r\n", &mut out);
        assert_eq!(out.into_iter().collect::<Vec<_>>(), b"a\r\nb\r\0c\r\0\r\n");
    }
}

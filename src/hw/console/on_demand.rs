//! A non-blocking console fd that is registered with the runtime's epoll only while a read or
//! write has to wait.
//!
//! Why: a tty signals readiness on every batch of input its driver pushes (every USB packet of
//! a USB-serial adapter, every write of a pty's other side): 100-1000 a second at 115200 baud.
//! The expect engine reads a streaming console only every ~50 ms
//! (`dispatcher::connection::READ_PACE`), so while its fd sits in epoll every one of those
//! arrivals still wakes a runtime thread for nothing. Here the fd is read directly first; only
//! when it is empty is it registered to wait, and it is deregistered again as soon as the wait
//! ends. A console streaming output is then read with no epoll wake-ups at all, and an idle one
//! costs one wake-up when output starts.
//!
//! Registration re-checks readiness (`epoll_ctl(ADD)` polls the fd), so bytes arriving between
//! the `EAGAIN` and the registration still wake the waiter.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// Where the fd is.
enum State<T: AsRawFd> {
    /// Not in epoll: reads and writes go straight to the fd.
    Bare(T),
    /// In epoll while a read or write waits.
    Waiting(AsyncFd<T>),
    /// Only between the two steps of a (de)registration, which cannot fail in between.
    Moving,
}

/// A non-blocking `T` (its fd must be in `O_NONBLOCK` mode) as `AsyncRead + AsyncWrite`.
pub struct OnDemandFd<T: AsRawFd> {
    state: State<T>,
}

impl<T: AsRawFd> std::fmt::Debug for OnDemandFd<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (fd, in_epoll) = match &self.state {
            State::Bare(inner) => (Some(inner.as_raw_fd()), false),
            State::Waiting(fd) => (Some(fd.as_raw_fd()), true),
            State::Moving => (None, false),
        };
        f.debug_struct("OnDemandFd")
            .field("fd", &fd)
            .field("in_epoll", &in_epoll)
            .finish()
    }
}

impl<T: AsRawFd> OnDemandFd<T> {
    /// Wraps `inner`, which must already be non-blocking.
    pub fn new(inner: T) -> OnDemandFd<T> {
        OnDemandFd {
            state: State::Bare(inner),
        }
    }

    /// Runs `op` on the fd, waiting for `interest` (registered only for the wait) while it
    /// would block.
    fn poll_io<R>(
        &mut self,
        cx: &mut Context<'_>,
        interest: Interest,
        mut op: impl FnMut(&mut T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            match &mut self.state {
                State::Bare(inner) => match op(inner) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.register()?,
                    done => return Poll::Ready(done),
                },
                State::Waiting(fd) => {
                    let mut guard = if interest.is_readable() {
                        ready!(fd.poll_read_ready_mut(cx))?
                    } else {
                        ready!(fd.poll_write_ready_mut(cx))?
                    };
                    if let Ok(done) = guard.try_io(|fd| op(fd.get_mut())) {
                        self.deregister();
                        return Poll::Ready(done);
                    }
                }
                State::Moving => unreachable!("the state is restored before any return"),
            }
        }
    }

    /// Puts the fd in epoll (for both directions: a wait is for one, and the other adds no
    /// wake-ups while nothing is written). On failure the fd stays as it was.
    fn register(&mut self) -> io::Result<()> {
        let State::Bare(inner) = std::mem::replace(&mut self.state, State::Moving) else {
            return Ok(());
        };
        // Deprecated in tokio 1.54 in favour of an `unsafe` constructor, because an `AsRawFd`
        // may hand out an fd it does not own, which could be closed while registered. Here
        // `T` owns its fd (a serial port opened by mio-serial), the `AsyncFd` owns `T`, and
        // `into_inner` deregisters before giving it back, so the fd outlives its
        // registration; this crate forbids `unsafe`, so the safe form is used.
        #[allow(deprecated)]
        let registered = AsyncFd::try_with_interest(inner, Interest::READABLE | Interest::WRITABLE);
        match registered {
            Ok(fd) => {
                self.state = State::Waiting(fd);
                Ok(())
            }
            Err(e) => {
                let (inner, cause) = e.into_parts();
                self.state = State::Bare(inner);
                Err(cause)
            }
        }
    }

    /// Takes the fd out of epoll again.
    fn deregister(&mut self) {
        if let State::Waiting(fd) = std::mem::replace(&mut self.state, State::Moving) {
            self.state = State::Bare(fd.into_inner());
        }
    }
}

/// A child process's stdout (a console command such as `telnet host port`, or an emulator's
/// serial on stdio) out of epoll until a read waits.
pub fn child_stdout(stdout: tokio::process::ChildStdout) -> io::Result<OnDemandFd<File>> {
    // tokio hands the pipe back blocking; its pipe type makes it non-blocking without
    // `unsafe`, and giving it up again deregisters it.
    let fd = tokio::net::unix::pipe::Receiver::from_owned_fd(stdout.into_owned_fd()?)?
        .into_nonblocking_fd()?;
    Ok(OnDemandFd::new(File::from(fd)))
}

impl<T: AsRawFd + Read + Unpin> AsyncRead for OnDemandFd<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let unfilled = buf.initialize_unfilled();
        let n = ready!(
            self.get_mut()
                .poll_io(cx, Interest::READABLE, |inner| inner.read(unfilled))
        )?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsRawFd + Write + Unpin> AsyncWrite for OnDemandFd<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_io(cx, Interest::WRITABLE, |inner| inner.write(buf))
    }

    /// Written bytes are already in the kernel's buffer; nothing here holds any back. (A
    /// tty's `Write::flush` is `tcdrain`, which blocks until the UART has sent them: not
    /// something to do on the runtime, and nothing a console needs.)
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::os::unix::net::UnixStream;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pair() -> (OnDemandFd<UnixStream>, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        (OnDemandFd::new(ours), theirs)
    }

    fn registered(fd: &OnDemandFd<UnixStream>) -> bool {
        matches!(fd.state, State::Waiting(_))
    }

    #[tokio::test]
    async fn reads_without_registering_while_data_is_there() {
        let (mut ours, mut theirs) = pair();
        theirs.write_all(b"streaming").unwrap();
        let mut buf = [0u8; 64];
        let n = ours.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"streaming");
        assert!(!registered(&ours));
    }

    #[tokio::test]
    async fn an_empty_fd_waits_registered_and_is_released_after() {
        let (mut ours, mut theirs) = pair();
        let (go, wait_for_go) = std::sync::mpsc::channel::<()>();
        let writer = std::thread::spawn(move || {
            // Written only once the reader is parked in epoll: a wait that never registered
            // would hang here instead of passing.
            wait_for_go.recv().unwrap();
            theirs.write_all(b"late").unwrap();
            theirs
        });
        let mut buf = [0u8; 64];
        let n = {
            let read = ours.read(&mut buf);
            tokio::pin!(read);
            let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
            assert!(first.is_pending(), "nothing to read yet");
            go.send(()).unwrap();
            tokio::time::timeout(std::time::Duration::from_secs(20), read)
                .await
                .expect("the registered wait was never woken")
                .unwrap()
        };
        assert_eq!(&buf[..n], b"late");
        assert!(!registered(&ours), "deregistered once the wait ended");
        let mut theirs = writer.join().unwrap();
        ours.write_all(b"reply").await.unwrap();
        let mut got = [0u8; 5];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"reply");
    }

    #[tokio::test]
    async fn end_of_file_reads_as_zero() {
        let (mut ours, theirs) = pair();
        drop(theirs);
        let mut buf = [0u8; 8];
        assert_eq!(ours.read(&mut buf).await.unwrap(), 0);
    }
}

//! systemd's service notification protocol (`sd_notify`): `READY=1` once every listener is
//! bound and serving, `STOPPING=1` when a SIGTERM starts the drain, and `STATUS=` lines.
//!
//! The protocol is one datagram of newline-separated `KEY=VALUE` assignments sent to the
//! `AF_UNIX` socket named by `$NOTIFY_SOCKET` (a path, or an abstract name written with a
//! leading `@`). There is no crate for it here on purpose: it is a few lines over the
//! standard library's `UnixDatagram`, and outside systemd (no `$NOTIFY_SOCKET`) every call is
//! a no-op. The unit (`systemd/lavabox.service`) is `Type=notify`, so systemd orders the
//! units after it (and `systemctl start` returns) only once lavabox answers.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Where the notifications go, parsed from `$NOTIFY_SOCKET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A socket in the file system.
    Path(PathBuf),
    /// A Linux abstract socket (the name without its leading `@`).
    Abstract(Vec<u8>),
}

/// Why `$NOTIFY_SOCKET` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The variable is set but empty, or only `@`.
    #[error("${NOTIFY_SOCKET} is empty")]
    Empty,
    /// Neither an absolute path nor an abstract name (`vsock:` and relative paths are not
    /// supported).
    #[error("${NOTIFY_SOCKET} `{0}` is neither an absolute path nor an abstract `@name`")]
    Unsupported(String),
    /// A state assignment that would break the datagram's line format.
    #[error("notification `{0}` is not one KEY=VALUE line")]
    BadState(String),
}

/// Parses the value of `$NOTIFY_SOCKET` (pure).
pub fn parse_target(value: &OsStr) -> Result<Target, Error> {
    let bytes = value.as_bytes();
    match bytes {
        [] | [b'@'] => Err(Error::Empty),
        [b'@', name @ ..] => Ok(Target::Abstract(name.to_vec())),
        [b'/', ..] => Ok(Target::Path(PathBuf::from(value))),
        _ => Err(Error::Unsupported(value.to_string_lossy().into_owned())),
    }
}

/// The datagram for `assignments` (pure): one `KEY=VALUE` per line. A key must be upper-case
/// ASCII and a value holds no newline, so one notification can never forge another.
pub fn message(assignments: &[(&str, &str)]) -> Result<String, Error> {
    let mut out = String::new();
    for (key, value) in assignments {
        let key_ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !key_ok || value.contains('\n') {
            return Err(Error::BadState(format!("{key}={value}")));
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
        out.push('\n');
    }
    Ok(out)
}

/// Sends `assignments` to `target`. Non-blocking: a full socket buffer is an error, never a
/// wait, so it may be called from the async runtime.
pub fn send_to(target: &Target, assignments: &[(&str, &str)]) -> std::io::Result<()> {
    use std::os::unix::net::UnixDatagram;
    let text = message(assignments)
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?;
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    match target {
        Target::Path(path) => socket.send_to(text.as_bytes(), path)?,
        Target::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(text.as_bytes(), &addr)?
        }
    };
    Ok(())
}

/// Sends `assignments` to `$NOTIFY_SOCKET` if it is set; returns whether it was. A failure is
/// logged (lavabox keeps serving; systemd's start timeout reports a readiness never sent).
pub fn notify(assignments: &[(&str, &str)]) -> bool {
    let Some(value) = std::env::var_os(NOTIFY_SOCKET) else {
        return false;
    };
    let sent = parse_target(&value)
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))
        .and_then(|target| send_to(&target, assignments));
    if let Err(err) = sent {
        tracing::warn!(error = %err, "notifying systemd");
        return false;
    }
    true
}

/// `READY=1`: every listener is bound and the services run.
pub fn ready(status: &str) -> bool {
    notify(&[("READY", "1"), ("STATUS", status)])
}

/// `STOPPING=1`: the graceful stop has begun.
pub fn stopping() -> bool {
    notify(&[
        ("STOPPING", "1"),
        ("STATUS", "stopping: draining requests and jobs"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target(OsStr::new("/run/systemd/notify")),
            Ok(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse_target(OsStr::new("@/org/freedesktop/systemd1/notify/1")),
            Ok(Target::Abstract(
                b"/org/freedesktop/systemd1/notify/1".to_vec()
            ))
        );
        assert_eq!(parse_target(OsStr::new("")), Err(Error::Empty));
        assert_eq!(parse_target(OsStr::new("@")), Err(Error::Empty));
        assert!(matches!(
            parse_target(OsStr::new("vsock:2:1234")),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            parse_target(OsStr::new("relative/sock")),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn messages() {
        assert_eq!(
            message(&[("READY", "1"), ("STATUS", "serving on 0.0.0.0:80")]).unwrap(),
            "READY=1\nSTATUS=serving on 0.0.0.0:80\n"
        );
        assert!(matches!(
            message(&[("STATUS", "a\nREADY=1")]),
            Err(Error::BadState(_))
        ));
        assert!(matches!(
            message(&[("ready", "1")]),
            Err(Error::BadState(_))
        ));
        assert!(matches!(message(&[("", "1")]), Err(Error::BadState(_))));
    }

    #[test]
    fn sends_to_a_path_and_an_abstract_socket() {
        use std::os::unix::net::UnixDatagram;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        send_to(&Target::Path(path), &[("READY", "1")]).unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("lavabox-sdnotify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(&Target::Abstract(name.into_bytes()), &[("STOPPING", "1")]).unwrap();
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");
    }

    #[test]
    fn nobody_listening_is_an_error_not_a_wait() {
        let dir = tempfile::tempdir().unwrap();
        let err = send_to(&Target::Path(dir.path().join("absent")), &[("READY", "1")]);
        assert!(err.is_err());
    }
}

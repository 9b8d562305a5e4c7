//! The listening socket: TCP (with a backlog and optional `SO_REUSEPORT`) or a Unix socket.

use std::io;
use std::net::SocketAddr;
#[cfg(unix)]
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// A bound listener.
pub(crate) enum Listener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix {
        listener: tokio::net::UnixListener,
        path: PathBuf,
        /// Bound here (the file goes when the server stops), not passed by the parent.
        owned: bool,
    },
}

/// An accepted connection.
pub(crate) enum Accepted {
    Tcp(TcpStream, SocketAddr),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl Listener {
    pub(crate) fn tcp(addr: SocketAddr, backlog: u32, reuse_port: bool) -> io::Result<Self> {
        let named =
            |err: io::Error| io::Error::new(err.kind(), format!("cannot bind {addr}: {err}"));
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(named)?;
        // As the standard library does on Unix: a restarted server rebinds at once.
        #[cfg(unix)]
        socket.set_reuseaddr(true).map_err(named)?;
        #[cfg(unix)]
        if reuse_port {
            socket.set_reuseport(true).map_err(named)?;
        }
        #[cfg(not(unix))]
        if reuse_port {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "SO_REUSEPORT needs a Unix system",
            ));
        }
        socket.bind(addr).map_err(named)?;
        Ok(Self::Tcp(socket.listen(backlog).map_err(named)?))
    }

    /// Binds a Unix socket at `path`; a socket file left by a server that is gone (nothing
    /// accepts on it) is replaced, a live one is an error.
    #[cfg(unix)]
    pub(crate) fn unix(path: &Path) -> io::Result<Self> {
        let named = |err: io::Error| {
            io::Error::new(err.kind(), format!("cannot bind {}: {err}", path.display()))
        };
        let listener = match tokio::net::UnixListener::bind(path) {
            Err(err) if err.kind() == io::ErrorKind::AddrInUse => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(named(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "another server is listening on it",
                    )));
                }
                std::fs::remove_file(path).map_err(named)?;
                tokio::net::UnixListener::bind(path).map_err(named)?
            }
            other => other.map_err(named)?,
        };
        Ok(Self::Unix {
            listener,
            path: path.to_owned(),
            owned: true,
        })
    }

    /// A listening socket the parent process passed: `0`, its stdin (inetd, launchd,
    /// uvicorn's `--fd 0`), or `3 + i`, the `i`-th of systemd's socket activation
    /// (`LISTEN_FDS`, for this process by `LISTEN_PID`). TCP or Unix, whichever it is; a
    /// descriptor that is neither a listening TCP nor Unix socket is an error.
    #[cfg(unix)]
    pub(crate) fn inherited(fd: i32) -> io::Result<Self> {
        use std::os::fd::AsFd;
        let named = |err: io::Error| {
            io::Error::new(
                err.kind(),
                format!("cannot serve on descriptor {fd}: {err}"),
            )
        };
        let unsupported = || {
            named(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not passed: expected 0 (stdin) or 3, 4, ... from systemd's LISTEN_FDS",
            ))
        };
        let (tcp, unix) = match fd {
            0 => {
                // A second descriptor of the same socket, owned: no `unsafe` needed.
                let owned = io::stdin().as_fd().try_clone_to_owned().map_err(named)?;
                let tcp = std::net::TcpListener::from(owned);
                if tcp.local_addr().is_ok() {
                    (Some(tcp), None)
                } else {
                    let owned = std::os::fd::OwnedFd::from(tcp);
                    (None, Some(std::os::unix::net::UnixListener::from(owned)))
                }
            }
            3.. => {
                let index = usize::try_from(fd - 3).map_err(|_| unsupported())?;
                let mut passed = listenfd::ListenFd::from_env();
                if index >= passed.len() {
                    return Err(unsupported());
                }
                match passed.take_tcp_listener(index) {
                    Ok(tcp) => (tcp, None),
                    Err(_) => (None, passed.take_unix_listener(index).map_err(named)?),
                }
            }
            _ => return Err(unsupported()),
        };
        if let Some(tcp) = tcp {
            tcp.set_nonblocking(true).map_err(named)?;
            return Ok(Self::Tcp(TcpListener::from_std(tcp).map_err(named)?));
        }
        let unix = unix.ok_or_else(unsupported)?;
        let local = unix.local_addr().map_err(|_| {
            named(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a listening TCP or Unix socket",
            ))
        })?;
        unix.set_nonblocking(true).map_err(named)?;
        let path = local.as_pathname().map(Path::to_owned).unwrap_or_default();
        Ok(Self::Unix {
            listener: tokio::net::UnixListener::from_std(unix).map_err(named)?,
            path,
            owned: false,
        })
    }

    pub(crate) async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Self::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                if let Err(err) = stream.set_nodelay(true) {
                    tracing::debug!(error = %err, "cannot set TCP_NODELAY");
                }
                Ok(Accepted::Tcp(stream, peer))
            }
            #[cfg(unix)]
            Self::Unix { listener, .. } => Ok(Accepted::Unix(listener.accept().await?.0)),
        }
    }

    /// What it listens on, for logs: `127.0.0.1:8000` or `unix:/run/app.sock`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Tcp(listener) => listener
                .local_addr()
                .map_or_else(|_| "?".to_owned(), |a| a.to_string()),
            #[cfg(unix)]
            Self::Unix { path, .. } => format!("unix:{}", path.display()),
        }
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Self::Tcp(listener) => listener.local_addr(),
            #[cfg(unix)]
            Self::Unix { .. } => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a Unix socket has no IP address",
            )),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Self::Unix {
            path, owned: true, ..
        } = self
        {
            let _ = std::fs::remove_file(&*path);
        }
    }
}

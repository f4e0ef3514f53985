//! Binding the listeners: the admin listener, and one public listener per proxy thread in
//! one `SO_REUSEPORT` group.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use super::slot_shares;
use crate::snapshot::State;

/// Bound listeners, ready to serve: the admin listener, and one public listener per proxy
/// thread (`runtime.threads`), all bound to the same address with `SO_REUSEPORT` so the
/// kernel spreads connections across them.
pub struct Listeners {
    pub(super) public: Vec<std::net::TcpListener>,
    pub(super) admin: TcpListener,
}

impl Listeners {
    pub async fn bind(state: &State) -> std::io::Result<Self> {
        let config = &state.snapshot.load().config;
        // No thread without a connection slot: as many as `slot_shares` hands slots to.
        let threads = slot_shares(config.limits.max_connections, config.runtime.threads()).len();
        // A plain bind first: an address already in use (another moat, a stale one with an
        // old config) is an error, not a silent join of its `SO_REUSEPORT` group. With port
        // 0 it also picks the port the group then binds.
        let addr = std::net::TcpListener::bind(config.listen)
            .and_then(|probe| probe.local_addr())
            .map_err(named("listen", config.listen))?;
        let public = (0..threads)
            .map(|_| public_listener(addr, threads > 1).map_err(named("listen", addr)))
            .collect::<Result<Vec<_>, _>>()?;
        let admin = TcpListener::bind(config.admin_listen)
            .await
            .map_err(named("admin_listen", config.admin_listen))?;
        Ok(Self { public, admin })
    }

    pub fn public_addr(&self) -> std::io::Result<SocketAddr> {
        self.public
            .first()
            .ok_or_else(|| std::io::Error::other("no public listener"))?
            .local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }
}

/// A bind error that names the setting and the address it was for.
fn named(name: &'static str, addr: SocketAddr) -> impl Fn(std::io::Error) -> std::io::Error {
    move |error: std::io::Error| {
        std::io::Error::new(error.kind(), format!("`{name}` {addr}: {error}"))
    }
}

/// A listening socket left for a proxy thread to register with its own runtime.
fn public_listener(addr: SocketAddr, shared: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // Only processes of the same user can join a `SO_REUSEPORT` group on Linux.
    socket.set_reuseaddr(true)?;
    if shared {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
}

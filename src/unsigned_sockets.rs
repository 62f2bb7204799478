//! Sockets accepted before they sign in (a conversation's participants, a site's consoles): each
//! must say `hello` within `HELLO_TIMEOUT_MS`, and one address may hold only
//! `MAX_UNSIGNED_SOCKETS_PER_IP` of them on one object, so nobody holds an object's sockets open
//! without a token.

use std::cell::RefCell;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{select, Either};
use parley_core::limits::{HELLO_TIMEOUT_MS, MAX_UNSIGNED_SOCKETS_PER_IP};
use parley_core::ErrorCode;
use worker::{State, WebSocket};

/// A socket that has not signed in: the address it came from and when it was accepted (ms).
pub struct Unsigned {
    pub ip: Option<String>,
    pub opened_at: i64,
}

/// Before a socket from `ip` is accepted: the unsigned sockets past the hello timeout are handed
/// to `close_silent` (a timer lost to an eviction did not close them), and the new one is
/// refused with `too_many_connections` when its address already holds the most.
/// `unsigned` tells an object's unsigned sockets (`None` for signed-in ones and other sockets).
pub fn make_room(
    state: &State,
    ip: Option<&str>,
    now: i64,
    unsigned: impl Fn(&WebSocket) -> Option<Unsigned>,
    close_silent: impl Fn(&WebSocket),
) -> Result<(), ErrorCode> {
    let mut unsigned_from_ip = 0;
    for ws in state.get_websockets() {
        let Some(other) = unsigned(&ws) else {
            continue;
        };
        if now - other.opened_at >= HELLO_TIMEOUT_MS {
            close_silent(&ws);
        } else if other.ip.as_deref() == ip {
            unsigned_from_ip += 1;
        }
    }
    if unsigned_from_ip >= MAX_UNSIGNED_SOCKETS_PER_IP {
        return Err(ErrorCode::TooManyConnections);
    }
    Ok(())
}

/// The hello timers of one object instance's sockets, each with the means to stop it: a timer
/// left running would keep the instance from hibernating for its whole length. After an
/// eviction they are gone, and the next socket accepted sweeps the silent ones ([`make_room`]).
#[derive(Default)]
pub struct HelloTimers {
    waiting: RefCell<Vec<(WebSocket, oneshot::Sender<()>)>>,
}

impl HelloTimers {
    /// Calls `on_silence` after the hello timeout unless [`Self::stop`] comes first; it is to
    /// close the socket if it is still open and unsigned.
    pub fn start(
        &self,
        state: &State,
        ws: WebSocket,
        on_silence: impl FnOnce(&WebSocket) + 'static,
    ) {
        let (stop, stopped) = oneshot::channel::<()>();
        let mut waiting = self.waiting.borrow_mut();
        // Timers that already rang are let go here.
        waiting.retain(|(_, timer)| !timer.is_canceled());
        waiting.push((ws.clone(), stop));
        state.wait_until(async move {
            let timer = worker::Delay::from(Duration::from_millis(HELLO_TIMEOUT_MS as u64));
            // Stopped (or its sender dropped): the socket said hello or closed.
            if let Either::Right(_) = select(timer, stopped).await {
                return;
            }
            on_silence(&ws);
        });
    }

    /// Ends the timer of a socket that said hello or closed.
    pub fn stop(&self, ws: &WebSocket) {
        self.waiting
            .borrow_mut()
            .retain(|(waiting, _)| waiting != ws);
    }
}

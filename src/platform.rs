//! The runtime's clock, randomness and WebCrypto, for the code that must not do its own.

use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::Result;

/// Rust futures run their woken tasks in a microtask, queued with the global `queueMicrotask`
/// when there is one. In workerd that call wraps the callback in a new native function handle
/// every time: about 3 KB of short-lived heap per chat message, measured with V8's sampling
/// heap profiler, and young-generation collections are what stall the runtime under load. A
/// resolved promise's `then` queues the same microtask for a reaction record. The choice is
/// made once, when the task queue is first used: the global is hidden for that moment only.
pub fn run_futures_on_promise_microtasks() {
    let global = js_sys::global();
    let key = JsValue::from_str("queueMicrotask");
    let Ok(queue_microtask) = Reflect::get(&global, &key) else {
        return;
    };
    if !matches!(Reflect::set(&global, &key, &JsValue::UNDEFINED), Ok(true)) {
        return;
    }
    // Creates the task queue, which looks for the global now.
    worker::wasm_bindgen_futures::spawn_local(async {});
    let _ = Reflect::set(&global, &key, &queue_microtask);
}

pub fn now_ms() -> i64 {
    // The static Date.now(): no Date object is made for each reading.
    js_sys::Date::now() as i64
}

fn crypto() -> Result<web_sys::Crypto> {
    js_sys::global()
        .unchecked_into::<web_sys::WorkerGlobalScope>()
        .crypto()
        .map_err(worker::Error::from)
}

/// 16 bytes from the runtime's CSPRNG, for ids, epochs and salts.
pub fn random_16() -> Result<[u8; 16]> {
    random()
}

/// `N` bytes from the runtime's CSPRNG.
pub fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    crypto()?
        .get_random_values_with_u8_array(&mut bytes)
        .map_err(worker::Error::from)?;
    Ok(bytes)
}

/// PBKDF2-SHA256 through WebCrypto.
pub async fn pbkdf2_sha256(
    password: &str,
    salt: &[u8],
    iterations: u32,
    len: usize,
) -> Result<Vec<u8>> {
    let subtle = crypto()?.subtle();
    let usages = js_sys::Array::of1(&JsValue::from_str("deriveBits"));
    let raw = Uint8Array::from(password.as_bytes());
    let key_promise = subtle
        .import_key_with_str("raw", &raw, "PBKDF2", false, &usages)
        .map_err(worker::Error::from)?;
    let key: web_sys::CryptoKey = JsFuture::from(key_promise).await?.unchecked_into();
    let params = Object::new();
    Reflect::set(&params, &"name".into(), &"PBKDF2".into())?;
    Reflect::set(&params, &"hash".into(), &"SHA-256".into())?;
    Reflect::set(&params, &"salt".into(), &Uint8Array::from(salt))?;
    Reflect::set(&params, &"iterations".into(), &JsValue::from(iterations))?;
    let bits_promise = subtle
        .derive_bits_with_object(&params, &key, (len * 8) as u32)
        .map_err(worker::Error::from)?;
    let bits = JsFuture::from(bits_promise).await?;
    Ok(Uint8Array::new(&bits).to_vec())
}

/// Lets the runtime answer the protocol's exact-text ping itself, so an idle socket's
/// keep-alive does not wake a hibernated object.
pub fn answer_pings_without_waking(state: &worker::State) {
    if let Ok(pair) = worker::worker_sys::WebSocketRequestResponsePair::new(
        parley_core::protocol::PING_FRAME,
        parley_core::protocol::PONG_FRAME,
    ) {
        state.set_websocket_auto_response(&pair);
    }
}

/// Schedules again the alarm an object stored, once per instance (`checked` remembers), and
/// returns when it now rings. Only where `RECOVER_ALARMS_ON_START` is set (see `recovery`). A runtime that keeps alarms in memory only (workerd on one machine)
/// forgets them when its process restarts while storage still holds the time: left alone, that
/// alarm would never ring.
pub async fn recover_alarm(
    state: &worker::State,
    env: &worker::Env,
    checked: &std::cell::Cell<bool>,
) -> Option<i64> {
    if checked.replace(true) || !crate::recovery::wanted(env) {
        return None;
    }
    let storage = state.storage();
    let at = storage.get_alarm().await.ok().flatten()?;
    // A time other than the stored one, so the runtime takes it as a new alarm.
    let delay = (at - now_ms()).max(0) as u64 + 1;
    match storage
        .set_alarm(std::time::Duration::from_millis(delay))
        .await
    {
        Ok(()) => Some(now_ms() + delay as i64),
        Err(e) => {
            crate::log::Log::error("alarm_failed")
                .error_class("storage_unavailable")
                .field("detail", e.to_string())
                .emit();
            None
        }
    }
}

/// Keeps a socket's attachment as one JSON string. It is read for every socket on every
/// broadcast: a string crosses from JavaScript in one copy, where an object is walked field by
/// field across the boundary.
pub fn save_attachment<T: serde::Serialize>(ws: &worker::WebSocket, value: &T) -> Result<()> {
    let json = serde_json::to_string(value).map_err(|e| worker::Error::RustError(e.to_string()))?;
    ws.serialize_attachment(&json)
}

/// A socket's attachment, as [`save_attachment`] kept it.
pub fn load_attachment<T: serde::de::DeserializeOwned>(ws: &worker::WebSocket) -> Option<T> {
    read_attachment(ws).ok().flatten()
}

/// A socket's attachment: `Ok(None)` when it has none, `Err` when it could not be read.
fn read_attachment<T: serde::de::DeserializeOwned>(
    ws: &worker::WebSocket,
) -> std::result::Result<Option<T>, ()> {
    match ws.deserialize_attachment::<String>() {
        Ok(Some(json)) => parley_core::json::from_str(&json).map(Some).map_err(|_| ()),
        Ok(None) => Ok(None),
        // Sockets accepted by an older version carry the attachment as an object.
        Err(_) => ws.deserialize_attachment::<T>().map_err(|_| ()),
    }
}

/// Socket attachments as an object instance has read or written them: each is read from
/// storage once per socket and instance (a read is a structured-clone copy, dearer than the
/// rest of a broadcast), and written through. A socket without one (a conversation's line to
/// its site) is remembered as such, or every broadcast would read it again.
pub struct Attachments<T> {
    known: std::cell::RefCell<Vec<(worker::WebSocket, Option<std::rc::Rc<T>>)>>,
}

impl<T: serde::Serialize + serde::de::DeserializeOwned> Attachments<T> {
    pub fn new() -> Self {
        Attachments {
            known: std::cell::RefCell::new(Vec::new()),
        }
    }

    pub fn get(&self, ws: &worker::WebSocket) -> Option<std::rc::Rc<T>> {
        if let Some((_, value)) = self.known.borrow().iter().find(|(known, _)| known == ws) {
            return value.clone();
        }
        // A read that failed is not remembered: the next look tries again.
        let value = read_attachment::<T>(ws).ok()?.map(std::rc::Rc::new);
        self.known.borrow_mut().push((ws.clone(), value.clone()));
        value
    }

    pub fn set(&self, ws: &worker::WebSocket, value: T) -> Result<()> {
        save_attachment(ws, &value)?;
        let value = Some(std::rc::Rc::new(value));
        let mut known = self.known.borrow_mut();
        match known.iter_mut().find(|(known, _)| known == ws) {
            Some(entry) => entry.1 = value,
            None => known.push((ws.clone(), value)),
        }
        Ok(())
    }

    /// Forgets a socket that closed.
    pub fn forget(&self, ws: &worker::WebSocket) {
        self.known.borrow_mut().retain(|(known, _)| known != ws);
    }
}

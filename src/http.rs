//! HTTP plumbing shared by the Worker and the Durable Objects: typed errors to responses,
//! JSON bodies with a size limit, and the headers every API answer carries.

use futures::StreamExt;
use parley_core::i18n::{error_message, Lang};
use parley_core::limits::{MAX_FRAME_BYTES, MAX_INTERNAL_BODY_BYTES};
use parley_core::request_url::{self, UrlParts};
use parley_core::{ErrorCode, ServerFrame};
use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{Headers, Request, Response, Result};

use crate::query::{FromQuery, Params};

/// A refusal with a stable code; everything the client needs to react.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub client_msg_id: Option<String>,
    pub retry_after_ms: Option<u64>,
    /// The request body's field an `invalid_request` is about (a path: `routing.hours`), so a
    /// form can say which of its fields to correct.
    pub field: Option<&'static str>,
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        ApiError {
            code,
            client_msg_id: None,
            retry_after_ms: None,
            field: None,
        }
    }
}

impl ApiError {
    pub fn rate_limited(retry_after_ms: u64) -> ApiError {
        ApiError {
            code: ErrorCode::RateLimited,
            client_msg_id: None,
            retry_after_ms: Some(retry_after_ms),
            field: None,
        }
    }

    /// `invalid_request` about one field of the request's body.
    pub fn invalid_field(field: &'static str) -> ApiError {
        ApiError {
            field: Some(field),
            ..ErrorCode::InvalidRequest.into()
        }
    }

    /// The first of `checks` (a field and whether its value is refused) that refuses, as
    /// [`ApiError::invalid_field`].
    pub fn first_refused(checks: &[(&'static str, bool)]) -> Result<(), ApiError> {
        match checks.iter().find(|(_, refused)| *refused) {
            Some((field, _)) => Err(ApiError::invalid_field(field)),
            None => Ok(()),
        }
    }

    pub fn frame(&self, lang: Lang) -> ServerFrame {
        ServerFrame::Error {
            code: self.code,
            message: error_message(self.code, lang).to_string(),
            client_msg_id: self.client_msg_id.clone(),
            retry_after_ms: self.retry_after_ms,
            field: self.field.map(str::to_string),
        }
    }

    pub fn response(&self, lang: Lang) -> Result<Response> {
        let mut response = frame_response(&self.frame(lang), self.code.http_status())?;
        if let Some(ms) = self.retry_after_ms {
            response
                .headers_mut()
                .set("retry-after", &ms.div_ceil(1000).max(1).to_string())?;
        }
        Ok(response)
    }
}

/// Outcome of an API handler: a response, or a typed refusal rendered in the caller's language.
pub type ApiResult = std::result::Result<Response, ApiError>;

pub fn api_headers() -> Result<Headers> {
    let headers = Headers::new();
    headers.set("content-type", "application/json; charset=utf-8")?;
    headers.set("cache-control", "no-store")?;
    headers.set("x-content-type-options", "nosniff")?;
    Ok(headers)
}

/// The JSON body of an answer from another of Parley's objects, read as every JSON text is
/// (`parley_core::json`), not with the runtime binding's own decoder.
pub(crate) trait JsonBody {
    async fn json_body<T: DeserializeOwned>(&mut self) -> Result<T>;
}

impl JsonBody for Response {
    async fn json_body<T: DeserializeOwned>(&mut self) -> Result<T> {
        let text = self.text().await?;
        parley_core::json::from_str(&text).map_err(|e| worker::Error::RustError(e.to_string()))
    }
}

pub fn json_response<T: Serialize>(value: &T, status: u16) -> Result<Response> {
    let body = serde_json::to_string(value).map_err(|e| worker::Error::RustError(e.to_string()))?;
    json_text_response(body, status)
}

/// A response of JSON already written as text.
pub fn json_text_response(body: impl Into<String>, status: u16) -> Result<Response> {
    Ok(Response::ok(body)?
        .with_status(status)
        .with_headers(api_headers()?))
}

pub fn frame_response(frame: &ServerFrame, status: u16) -> Result<Response> {
    Ok(Response::ok(frame.to_json())?
        .with_status(status)
        .with_headers(api_headers()?))
}

pub fn no_content() -> Result<Response> {
    Ok(Response::empty()?
        .with_status(204)
        .with_headers(api_headers()?))
}

/// The request's URL split into origin, path and query (see `parley_core::request_url`).
pub fn with_url<R>(req: &Request, f: impl FnOnce(UrlParts<'_>) -> R) -> R {
    f(request_url::split(&req.inner().url()))
}

/// The query string read into `T`; a query that does not fit is an invalid request.
pub fn query<T: FromQuery>(req: &Request) -> std::result::Result<T, ApiError> {
    with_url(req, |url| T::from_query(&Params::parse(url.query)))
        .ok_or_else(|| ApiError::from(ErrorCode::InvalidRequest))
}

/// Whether the query string names parameter `name`, whatever its value.
pub fn query_has(req: &Request, name: &str) -> bool {
    with_url(req, |url| Params::parse(url.query).has(name))
}

/// A time in a query (`from`, `to`): Unix milliseconds, `YYYY-MM-DD` (midnight UTC) or RFC 3339;
/// absent or empty is `None`, anything else an invalid request.
pub fn time_param(value: Option<&str>) -> std::result::Result<Option<i64>, ApiError> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .or_else(|| parley_core::csv::parse_date(v))
            .map(Some)
            .ok_or_else(|| ErrorCode::InvalidRequest.into()),
    }
}

/// Reads a client's JSON body: at most [`MAX_FRAME_BYTES`].
pub async fn read_json<T: DeserializeOwned>(req: &mut Request) -> std::result::Result<T, ApiError> {
    read_json_within(req, MAX_FRAME_BYTES).await
}

/// Reads a JSON body that may be left out: an empty body (whatever its content type says)
/// reads as `T::default()`.
pub async fn read_optional_json<T: DeserializeOwned + Default>(
    req: &mut Request,
) -> std::result::Result<T, ApiError> {
    read_within_with(req, MAX_FRAME_BYTES, |text| {
        if text.trim().is_empty() {
            Ok(T::default())
        } else {
            parley_core::json::from_str(text)
        }
    })
    .await
}

/// Reads the JSON body of a request between Parley's own objects: at most
/// [`MAX_INTERNAL_BODY_BYTES`].
pub async fn read_internal_json<T: DeserializeOwned>(
    req: &mut Request,
) -> std::result::Result<T, ApiError> {
    read_json_within(req, MAX_INTERNAL_BODY_BYTES).await
}

/// Like [`read_internal_json`], for a type with a decoder of its own (a tagged enum's
/// `from_json`, which reads the text without going through a `serde_json::Value`).
pub async fn read_internal_with<T>(
    req: &mut Request,
    decode: impl FnOnce(&str) -> serde_json::Result<T>,
) -> std::result::Result<T, ApiError> {
    read_within_with(req, MAX_INTERNAL_BODY_BYTES, decode).await
}

async fn read_json_within<T: DeserializeOwned>(
    req: &mut Request,
    max_bytes: usize,
) -> std::result::Result<T, ApiError> {
    read_within_with(req, max_bytes, |text| parley_core::json::from_str(text)).await
}

async fn read_within_with<T>(
    req: &mut Request,
    max_bytes: usize,
    decode: impl FnOnce(&str) -> serde_json::Result<T>,
) -> std::result::Result<T, ApiError> {
    let bytes = read_json_body(req, max_bytes).await?;
    // Parsed from text, as every other JSON is: one copy of each type's decoder in the Worker.
    let text =
        std::str::from_utf8(&bytes).map_err(|_| ApiError::from(ErrorCode::InvalidRequest))?;
    decode(text).map_err(|_| ErrorCode::InvalidRequest.into())
}

/// A JSON request's body, at most `max_bytes` of it (`frame_too_large` past them). Not generic:
/// one copy of the reading loop serves every type read.
async fn read_json_body(
    req: &mut Request,
    max_bytes: usize,
) -> std::result::Result<Vec<u8>, ApiError> {
    match req.headers().get("content-length") {
        Ok(Some(length)) => match length.parse::<usize>() {
            // The runtime holds a body to its declared length: read in one go (every internal
            // request between objects comes this way; reading it as a stream costs a crossing
            // between JavaScript and the Worker per chunk).
            Ok(n) if n <= max_bytes => {
                let bytes = req
                    .bytes()
                    .await
                    .map_err(|_| ApiError::from(ErrorCode::InvalidRequest))?;
                if bytes.len() > max_bytes {
                    return Err(ErrorCode::FrameTooLarge.into());
                }
                Ok(bytes)
            }
            _ => Err(ErrorCode::FrameTooLarge.into()),
        },
        // Chunked: only reading tells the size, so it is read as it arrives and cut off.
        _ => {
            read_body_at_most(req, max_bytes, None, ErrorCode::FrameTooLarge, &mut |_| {
                Ok(())
            })
            .await
        }
    }
}

/// The request body, read as it streams in and refused with `too_large` as soon as it passes
/// `max` bytes: a body without a Content-Length is never held whole before its size is known.
/// `grow` is asked before the buffer grows to a new capacity, and may refuse (the buffer then
/// stays as it is and the body is not read further).
pub async fn read_body_at_most(
    req: &mut Request,
    max: usize,
    declared_len: Option<usize>,
    too_large: ErrorCode,
    grow: &mut dyn FnMut(usize) -> std::result::Result<(), ApiError>,
) -> std::result::Result<Vec<u8>, ApiError> {
    if req.inner().body().is_none() {
        return Ok(Vec::new());
    }
    let mut stream = req
        .stream()
        .map_err(|_| ApiError::from(ErrorCode::InvalidRequest))?;
    // The buffer grows with what arrives (a declared length alone reserves nothing), doubling
    // but never past the declared length or the limit: a 25 MiB upload ends in a 25 MiB
    // buffer, not a 32 MiB one.
    let limit = declared_len.unwrap_or(max).min(max);
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::from(ErrorCode::InvalidRequest))?;
        let needed = bytes.len().saturating_add(chunk.len());
        if needed > max {
            // Dropping the stream cancels it: the rest of the body is not read.
            return Err(too_large.into());
        }
        if needed > bytes.capacity() {
            let grown = (bytes.capacity() * 2).min(limit).max(needed);
            grow(grown)?;
            bytes.reserve_exact(grown - bytes.len());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The language the caller reads, from Accept-Language.
pub fn request_lang(req: &Request) -> Lang {
    req.headers()
        .get("accept-language")
        .ok()
        .flatten()
        .map(|h| Lang::negotiate(&h))
        .unwrap_or_default()
}

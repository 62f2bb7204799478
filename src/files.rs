//! Uploads and downloads of files in a conversation. Bytes are checked (type from the content,
//! clean names, JPEG location data removed) before they reach R2 under a server-made key, and
//! they come back only through the Worker, to readers of that conversation, with headers that
//! keep a browser from running anything in them.

use std::cell::RefCell;

use parley_core::attachment;
use parley_core::ids::IdKind;
use parley_core::token::Principal;
use parley_core::upload_buffer::{self, HoldId, UploadBuffer};
use parley_core::ErrorCode;
use serde::Deserialize;
use worker::{Headers, HttpMetadata, Request, Response};

use crate::api::{db, header, mint, operate, rate_limit, site_or_error, Ctx};
use crate::http::{read_body_at_most, ApiError, ApiResult, JsonBody};
use crate::internal::Operation;
use crate::limiter_object::Limit;
use crate::log::Log;
use crate::platform::now_ms;
use crate::query::from_query;
use crate::sites;
use crate::sql_store::FileRow;

/// The most a site may allow, whatever its settings say.
const HARD_MAX_BYTES: usize = 25 * 1024 * 1024;
/// When an upload refused as `uploads_busy` is worth sending again.
const UPLOADS_BUSY_RETRY_MS: u64 = 2_000;

fn bucket(ctx: &Ctx) -> Result<worker::Bucket, ApiError> {
    ctx.env.bucket("ATTACHMENTS").map_err(|e| {
        Log::error("r2_binding")
            .error_class("internal")
            .field("detail", e.to_string())
            .emit();
        ApiError::from(ErrorCode::Internal)
    })
}

fn r2_failed(ctx: &Ctx) -> impl FnOnce(worker::Error) -> ApiError + '_ {
    move |e| {
        Log::error("r2_unavailable")
            .trace(&ctx.trace)
            .error_class("storage_unavailable")
            .field("detail", e.to_string())
            .emit();
        ErrorCode::StorageUnavailable.into()
    }
}

/// `POST /api/v1/conversations/{id}/files?name=<file name>`, the raw bytes as the body.
pub async fn upload(req: &mut Request, ctx: &Ctx, id: &str, principal: &Principal) -> ApiResult {
    from_query! {
        struct Query {
            name: Option<String>,
        }
    }
    #[derive(Deserialize)]
    struct Info {
        site: String,
    }
    let query: Query = crate::http::query(req)?;
    rate_limit(ctx, &format!("upload:{}", principal.id()), Limit::Uploads).await?;
    rate_limit(ctx, &format!("upload:ip:{}", ctx.ip), Limit::IpUploads).await?;
    // Access first: the conversation's object answers for strangers exactly as for nothing.
    let mut info = operate(ctx, id, principal, Operation::Info).await?;
    if info.status_code() != 200 {
        return Ok(info);
    }
    let site_id = info
        .json_body::<Info>()
        .await
        .map_err(|_| ApiError::from(ErrorCode::Internal))?
        .site;
    let site = site_or_error(sites::by_id(&db(ctx)?, &site_id, ctx.now).await, ctx).await?;
    let max = site.settings.attachments.max_bytes.clamp(1, HARD_MAX_BYTES);
    let declared_len = header(req, "content-length").and_then(|l| l.parse::<usize>().ok());
    if declared_len.is_some_and(|n| n > max) {
        return Err(ErrorCode::FileTooLarge.into());
    }
    // Its share of the isolate's upload memory, held until the bytes are stored.
    let held = UploadHold::open();
    // Without a Content-Length (a chunked body) only reading tells the size: stop past the limit.
    let bytes = read_body_at_most(
        req,
        max,
        declared_len,
        ErrorCode::FileTooLarge,
        &mut |capacity| held.grow(ctx, capacity),
    )
    .await?;
    let declared_type = header(req, "content-type").unwrap_or_default();
    let raw_name = query.name.unwrap_or_default();
    let checked =
        attachment::check(&bytes, &declared_type, &raw_name, max).map_err(ApiError::from)?;
    let bytes = if checked.kind == attachment::Kind::Jpeg {
        let stripped =
            attachment::strip_jpeg_metadata(&bytes).ok_or(ErrorCode::UnsupportedFileType)?;
        // The original goes now, not at the end of the request: a large upload held twice
        // while it is written to R2 costs an isolate shared with other requests.
        drop(bytes);
        stripped
    } else {
        bytes
    };
    let file_id = mint(IdKind::File, ctx)?;
    let key = format!("c/{id}/{file_id}");
    let size = bytes.len() as u64;
    bucket(ctx)?
        .put(&key, bytes)
        .http_metadata(HttpMetadata {
            content_type: Some(checked.mime.clone()),
            ..HttpMetadata::default()
        })
        .execute()
        .await
        .map_err(r2_failed(ctx))?;
    // The bytes went to the runtime with the put: nothing of them is left to hold.
    drop(held);
    let row = FileRow {
        id: file_id,
        r2_key: key.clone(),
        name: checked.name,
        mime: checked.mime,
        size,
        image: i64::from(checked.image),
        uploader: principal.id().to_string(),
        created_at: ctx.now,
    };
    let (outcome, answer) = register(ctx, id, principal, row).await;
    match outcome {
        Answer::Recorded => Log::info("file_uploaded")
            .site(&site.id)
            .conversation(id)
            .trace(&ctx.trace)
            .field("kind", format!("{:?}", checked.kind).to_lowercase())
            .field("size", size)
            .emit(),
        // Not recorded: take the bytes back out rather than leave an orphan.
        Answer::Refused => discard(ctx, &key).await,
        // It may be recorded: deleting the bytes could leave the conversation a file that is
        // gone. Keep them, and say where they are.
        Answer::Unknown => Log::error("upload_unconfirmed")
            .site(&site.id)
            .conversation(id)
            .trace(&ctx.trace)
            .error_class("storage_unavailable")
            .field("key", key.as_str())
            .emit(),
    }
    answer
}

/// What one answer to an upload's registration says about the row.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Recorded,
    /// Answered with a refusal: nothing records the bytes.
    Refused,
    /// No answer, or a failure that may have come after the row was written.
    Unknown,
}

/// `None` is no answer at all.
fn read_answer(status: Option<u16>) -> Answer {
    match status {
        Some(201) => Answer::Recorded,
        Some(s) if (400..500).contains(&s) => Answer::Refused,
        _ => Answer::Unknown,
    }
}

/// Registers the upload with its conversation, asking once more when the outcome is unknown:
/// registration is idempotent by file id, so a second ask either records the file or finds it.
async fn register(ctx: &Ctx, id: &str, principal: &Principal, row: FileRow) -> (Answer, ApiResult) {
    let ask = || {
        operate(
            ctx,
            id,
            principal,
            Operation::RegisterFile { file: row.clone() },
        )
    };
    let first = ask().await;
    match read_answer(first.as_ref().ok().map(Response::status_code)) {
        Answer::Unknown => {}
        known => return (known, first),
    }
    let second = ask().await;
    (
        read_answer(second.as_ref().ok().map(Response::status_code)),
        second,
    )
}

thread_local! {
    /// The upload memory of this isolate: the requests it serves share it.
    static UPLOAD_BUFFER: RefCell<UploadBuffer> = RefCell::default();
}

/// An upload's share of the isolate's upload memory, grown as its bytes arrive and given back
/// when dropped (the upload was stored, refused, failed, or its request cancelled).
struct UploadHold {
    id: HoldId,
}

impl UploadHold {
    fn open() -> UploadHold {
        UploadHold {
            id: UPLOAD_BUFFER.with(|b| b.borrow_mut().open(now_ms())),
        }
    }

    /// Grows to what a buffer of `capacity` bytes needs, or refuses the upload as
    /// `uploads_busy` when other uploads already hold the budget (`UPLOAD_BUFFER_MB`).
    fn grow(&self, ctx: &Ctx, capacity: usize) -> Result<(), ApiError> {
        let bytes = upload_buffer::bytes_held_for(capacity);
        let now = now_ms();
        let budget = ctx.config.upload_buffer_bytes;
        if UPLOAD_BUFFER.with(|b| b.borrow_mut().try_grow(self.id, bytes, budget, now)) {
            return Ok(());
        }
        Log::warn("upload_deferred")
            .trace(&ctx.trace)
            .error_class(ErrorCode::UploadsBusy.as_str())
            .field("bytes", bytes)
            .field("held", UPLOAD_BUFFER.with(|b| b.borrow().held(now)))
            .emit();
        Err(ApiError {
            retry_after_ms: Some(UPLOADS_BUSY_RETRY_MS),
            ..ErrorCode::UploadsBusy.into()
        })
    }
}

impl Drop for UploadHold {
    fn drop(&mut self) {
        UPLOAD_BUFFER.with(|b| b.borrow_mut().close(self.id));
    }
}

/// Deletes bytes written to R2 that no conversation records. A failure is logged with the key,
/// so an operator can remove what is left.
async fn discard(ctx: &Ctx, key: &str) {
    let deleted = match bucket(ctx) {
        Ok(bucket) => bucket.delete(key).await.map_err(|e| e.to_string()),
        Err(_) => Err("no bucket binding".to_string()),
    };
    if let Err(detail) = deleted {
        Log::error("r2_orphan")
            .trace(&ctx.trace)
            .error_class("storage_unavailable")
            .field("key", key)
            .field("detail", detail)
            .emit();
    }
}

/// `GET /api/v1/conversations/{id}/files/{file}`: the bytes, for readers of the conversation.
pub async fn download(ctx: &Ctx, id: &str, file: &str, principal: &Principal) -> ApiResult {
    if !parley_core::ids::is_valid(IdKind::File, file) {
        return Err(ErrorCode::NotFound.into());
    }
    let mut answer = operate(
        ctx,
        id,
        principal,
        Operation::FileInfo {
            id: file.to_string(),
        },
    )
    .await?;
    if answer.status_code() != 200 {
        return Ok(answer);
    }
    let row: FileRow = answer
        .json_body()
        .await
        .map_err(|_| ApiError::from(ErrorCode::Internal))?;
    // A visitor may name a file after themselves: the name it is saved under is masked for
    // readers without the personal-data permission, as the file's event in history is. Done
    // here, not by the conversation, which may still run an older release during a deploy.
    let row = FileRow {
        name: parley_core::pii::file_name_for_reader(
            &row.name,
            parley_core::ids::is_valid(IdKind::Visitor, &row.uploader),
            principal.sees_pii(),
        ),
        ..row
    };
    let object = bucket(ctx)?
        .get(&row.r2_key)
        .execute()
        .await
        .map_err(r2_failed(ctx))?
        .ok_or(ErrorCode::NotFound)?;
    let body = object
        .body()
        .ok_or(ErrorCode::NotFound)?
        .response_body()
        .map_err(r2_failed(ctx))?;
    let headers = download_headers(&row).map_err(|_| ApiError::from(ErrorCode::Internal))?;
    Ok(Response::from_body(body)
        .map_err(|_| ApiError::from(ErrorCode::Internal))?
        .with_headers(headers))
}

/// Headers that make a download inert: no sniffing, a sandbox, and `attachment` for all but
/// the raster images whose type was verified from their bytes.
fn download_headers(row: &FileRow) -> worker::Result<Headers> {
    let headers = Headers::new();
    headers.set("content-type", &row.mime)?;
    headers.set("content-length", &row.size.to_string())?;
    headers.set("x-content-type-options", "nosniff")?;
    headers.set("content-security-policy", "sandbox; default-src 'none'")?;
    headers.set("cache-control", "private, max-age=3600")?;
    // The file name depends on the reader's permission (masked or not).
    headers.set("vary", "Authorization, Cookie")?;
    headers.set("cross-origin-resource-policy", "same-site")?;
    let disposition = if row.image != 0 {
        "inline"
    } else {
        "attachment"
    };
    // RFC 6266 / 5987: an ASCII fallback and the exact UTF-8 name.
    let ascii: String = row
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ') {
                c
            } else {
                '_'
            }
        })
        .collect();
    headers.set(
        "content-disposition",
        &format!(
            "{disposition}; filename=\"{ascii}\"; filename*=UTF-8''{}",
            percent_encode(&row.name)
        ),
    )?;
    Ok(headers)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refusal_lets_the_bytes_go() {
        assert_eq!(read_answer(Some(201)), Answer::Recorded);
        for refused in [400, 403, 404, 413, 429] {
            assert_eq!(read_answer(Some(refused)), Answer::Refused, "{refused}");
        }
        // A failure may have come after the write; no answer says nothing either way.
        for unknown in [Some(500), Some(503), Some(200), None] {
            assert_eq!(read_answer(unknown), Answer::Unknown, "{unknown:?}");
        }
    }
}

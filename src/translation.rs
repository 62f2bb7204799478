//! Running translations: after a message is stored and delivered, its translation is asked of
//! the site's provider in the background and recorded as its own event. A slow, failing or
//! nonsensical provider leaves the message as it is, with a visible "not translated" marker.

use parley_core::translate::{self, Provider, TranslationSettings};
use parley_core::webhook::url_allowed;
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::HashMap;

use worker::Env;

use crate::config::Config;
use crate::internal::SystemRequest;
use crate::log::Log;
use crate::platform::now_ms;
use crate::remembered::Remembered;
use crate::row::from_row;
use crate::sql_text::D1Rows;

const SETTINGS_TTL_MS: i64 = 30_000;
const CACHE_ENTRIES: usize = 2000;

thread_local! {
    static SETTINGS: Remembered<TranslationSettings> = Remembered::new(SETTINGS_TTL_MS);
    /// Repeated phrases ("hello", "thank you") are translated once per isolate.
    static CACHE: RefCell<HashMap<(String, String, String), String>> = RefCell::new(HashMap::new());
}

/// The site's translation settings (briefly cached); `None` when off or unreadable.
pub async fn settings(env: &Env, site: &str) -> Option<TranslationSettings> {
    let now = now_ms();
    if let Some(s) = SETTINGS.with(|c| c.fresh(site, now)) {
        return s.enabled.then_some(s);
    }
    from_row! {
        struct Row {
            translation: String,
        }
    }
    let row = async {
        env.d1("DB")?
            .prepare("SELECT translation FROM sites WHERE id = ?1")
            .bind(&[site.into()])?
            .first_row::<Row>()
            .await
    }
    .await
    .ok()
    .flatten()?;
    let parsed: TranslationSettings =
        parley_core::json::from_str(&row.translation).unwrap_or_default();
    SETTINGS.with(|c| c.remember(site, parsed.clone(), now));
    parsed.enabled.then_some(parsed)
}

/// One job: translate message `of` (text) from `from` to `to`.
pub struct Job {
    pub conversation: String,
    pub of: u64,
    pub text: String,
    pub from: String,
    pub to: String,
}

/// Translates and records the result (or the failure) in the conversation, through its object.
pub async fn run(env: Env, settings: TranslationSettings, job: Job) {
    let provider = match settings.provider {
        Provider::Libretranslate => "libretranslate",
        Provider::Openai => "openai",
        Provider::WorkersAi => "workers_ai",
    };
    let key = (job.from.clone(), job.to.clone(), job.text.clone());
    let cached = CACHE.with(|c| c.borrow().get(&key).cloned());
    let result = match cached {
        Some(text) => Ok(text),
        None => {
            let result = ask(&env, &settings, &job).await;
            if let Ok(text) = &result {
                CACHE.with(|c| {
                    let mut cache = c.borrow_mut();
                    if cache.len() >= CACHE_ENTRIES {
                        cache.clear();
                    }
                    cache.insert(key, text.clone());
                });
            }
            result
        }
    };
    if let Err(reason) = &result {
        Log::warn("translation_failed")
            .conversation(&job.conversation)
            .seq(job.of)
            .error_class(reason)
            .field("provider", provider)
            .emit();
    }
    let request = SystemRequest::Translate {
        of: job.of,
        from: job.from,
        to: job.to,
        result,
        provider: provider.to_string(),
    };
    let recorded = crate::internal::system_request(&env, &job.conversation, &request).await;
    if let Err(e) = recorded {
        Log::warn("translation_unrecorded")
            .conversation(&job.conversation)
            .error_class("storage_unavailable")
            .field("detail", e.to_string())
            .emit();
    }
}

/// Asks the provider; the error is a class: `timeout`, `provider_error`, `bad_response`,
/// `not_configured`.
async fn ask(env: &Env, settings: &TranslationSettings, job: &Job) -> Result<String, String> {
    if settings.provider == Provider::WorkersAi {
        return workers_ai(env, settings, job).await;
    }
    let allow_private = Config::from_env(env).webhook_allow_private;
    let base = settings.endpoint.trim_end_matches('/');
    if !url_allowed(base, allow_private) {
        return Err("not_configured".into());
    }
    let (url, body) = match settings.provider {
        Provider::Libretranslate => (
            format!("{base}/translate"),
            translate::libretranslate_request(
                &job.text,
                &job.from,
                &job.to,
                settings.api_key.as_deref(),
            ),
        ),
        _ => (
            format!("{base}/chat/completions"),
            translate::openai_request(&job.text, &job.from, &job.to, &settings.model),
        ),
    };
    let key = match settings.provider {
        Provider::Openai => settings.api_key.as_deref(),
        _ => None, // LibreTranslate takes its key in the body
    };
    let answer =
        crate::outbound::post_json(&url, key, &body, settings.timeout_ms.clamp(500, 30_000))
            .await?;
    let text = match settings.provider {
        Provider::Libretranslate => translate::libretranslate_response(&answer),
        _ => translate::openai_response(&answer),
    }
    .filter(|t| translate::plausible(&job.text, t));
    text.ok_or_else(|| "bad_response".into())
}

/// Cloudflare Workers AI (binding `AI`, deployed on Cloudflare only).
async fn workers_ai(
    env: &Env,
    settings: &TranslationSettings,
    job: &Job,
) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Answer {
        translated_text: Option<String>,
    }
    // A struct, not a serde_json value: the binding takes a plain object, and a json map
    // would cross into JavaScript as a Map.
    #[derive(serde::Serialize)]
    struct Input<'a> {
        text: &'a str,
        source_lang: &'a str,
        target_lang: &'a str,
    }
    let ai = env.ai("AI").map_err(|_| "not_configured".to_string())?;
    let input = Input {
        text: &job.text,
        source_lang: if job.from == "auto" {
            "en"
        } else {
            job.from.as_str()
        },
        target_lang: &job.to,
    };
    let model = if settings.model.starts_with("@cf/") {
        settings.model.as_str()
    } else {
        "@cf/meta/m2m100-1.2b"
    };
    let call = ai.run::<_, Answer>(model, input);
    let answer = crate::outbound::within(settings.timeout_ms.clamp(500, 60_000), call)
        .await?
        .map_err(|_| "provider_error".to_string())?;
    answer
        .translated_text
        .filter(|t| translate::plausible(&job.text, t))
        .ok_or_else(|| "bad_response".into())
}

//! A site's automation settings and business hours, read from D1 for the conversation objects
//! that act on them (briefly cached per isolate).

use std::rc::Rc;

use parley_core::automation::AutomationSettings;
use parley_core::routing::RoutingConfig;
use worker::Env;

use crate::platform::now_ms;
use crate::remembered::Remembered;
use crate::row::from_row;
use crate::sql_text::D1Rows;

const TTL_MS: i64 = 30_000;

#[derive(Clone, Default)]
pub struct SiteAutomation {
    pub settings: AutomationSettings,
    pub routing: RoutingConfig,
    pub bot: parley_core::bot::BotSettings,
    /// Whether the site may have enabled webhooks (true when that could not be read), so
    /// conversations skip handing events to the webhook object when none could want them.
    pub webhooks: bool,
}

thread_local! {
    static CACHE: Remembered<Rc<SiteAutomation>> = Remembered::new(TTL_MS);
}

/// The site's automations; none when D1 cannot be read (automations are a convenience).
pub async fn load(env: &Env, site: &str) -> Rc<SiteAutomation> {
    let now = now_ms();
    if let Some(cached) = CACHE.with(|c| c.fresh(site, now)) {
        return cached;
    }
    from_row! {
        struct Row {
            automation: String,
            routing: String,
            bot: String,
            webhooks: u8,
        }
    }
    let row = async {
        env.d1("DB")?
            .prepare(
                "SELECT automation, routing, bot,
                   EXISTS (SELECT 1 FROM webhooks w WHERE w.site_id = sites.id AND w.enabled = 1) AS webhooks
                 FROM sites WHERE id = ?1",
            )
            .bind(&[site.into()])?
            .first_row::<Row>()
            .await
    }
    .await
    .ok()
    .flatten();
    let loaded = row
        .map(|r| SiteAutomation {
            settings: parley_core::json::from_str(&r.automation).unwrap_or_default(),
            routing: parley_core::json::from_str(&r.routing).unwrap_or_default(),
            bot: parley_core::json::from_str(&r.bot).unwrap_or_default(),
            webhooks: r.webhooks != 0,
        })
        .unwrap_or(SiteAutomation {
            webhooks: true,
            ..SiteAutomation::default()
        });
    let loaded = Rc::new(loaded);
    CACHE.with(|c| c.remember(site, loaded.clone(), now));
    loaded
}

/// Drops what this isolate remembers of a site's settings (they just changed here).
pub fn forget(site: &str) {
    CACHE.with(|c| c.forget(site));
}

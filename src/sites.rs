//! Site configuration from D1, cached briefly in the isolate so that new visitors can still
//! start chatting through a short D1 outage.

use parley_core::routing::RoutingConfig;
use parley_core::site_settings::WidgetSettings;
use worker::D1Database;

use crate::remembered::Remembered;
use crate::row::from_row;
use crate::sql_text::D1Rows;

const CACHE_TTL_MS: i64 = 60_000;

#[derive(Debug, Clone)]
pub struct Site {
    pub id: String,
    pub team_id: String,
    pub name: String,
    pub allowed_origins: Vec<String>,
    pub settings: WidgetSettings,
    /// Key of the HMAC the site's server signs visitor ids with; `None` turns verification off.
    pub identity_secret: Option<String>,
    pub routing: RoutingConfig,
}

from_row! {
    struct SiteRow {
        id: String,
        team_id: String,
        name: String,
        allowed_origins: String,
        settings: String,
        identity_secret: Option<String>,
        routing: String,
    }
}

thread_local! {
    static CACHE: Remembered<Site> = Remembered::new(CACHE_TTL_MS);
}

pub enum Lookup {
    Found(Box<Site>),
    Unknown,
    Unavailable(String),
}

/// The site with this public key; a fresh cached copy is used while D1 is unreachable.
pub async fn by_key(db: &D1Database, key: &str, now: i64) -> Lookup {
    lookup(db, "site_key", key, now).await
}

/// The site with this id.
pub async fn by_id(db: &D1Database, id: &str, now: i64) -> Lookup {
    lookup(db, "id", id, now).await
}

async fn lookup(db: &D1Database, column: &'static str, value: &str, now: i64) -> Lookup {
    if value.is_empty() || value.len() > 64 {
        return Lookup::Unknown;
    }
    let key = format!("{column}:{value}");
    let key = key.as_str();
    if let Some(site) = CACHE.with(|c| c.fresh(key, now)) {
        return Lookup::Found(Box::new(site));
    }
    let query = db
        .prepare(format!(
            "SELECT id, team_id, name, allowed_origins, settings, identity_secret, routing FROM sites WHERE {column} = ?1"
        ))
        .bind(&[value.into()]);
    let row = match query {
        Ok(statement) => statement.first_row::<SiteRow>().await,
        Err(e) => Err(e),
    };
    match row {
        Ok(Some(row)) => {
            let site = Site {
                id: row.id,
                team_id: row.team_id,
                name: row.name,
                settings: WidgetSettings::from_stored(&row.settings),
                identity_secret: row.identity_secret.filter(|s| !s.is_empty()),
                routing: parley_core::json::from_str(&row.routing).unwrap_or_default(),
                allowed_origins: parley_core::json::from_str(&row.allowed_origins)
                    .unwrap_or_default(),
            };
            CACHE.with(|c| c.remember(key, site.clone(), now));
            Lookup::Found(Box::new(site))
        }
        Ok(None) => Lookup::Unknown,
        // A stale copy beats refusing a visitor while D1 is down.
        Err(e) => match CACHE.with(|c| c.any(key)) {
            Some(site) => Lookup::Found(Box::new(site)),
            None => Lookup::Unavailable(e.to_string()),
        },
    }
}

thread_local! {
    static ORIGINS: Remembered<bool> = Remembered::new(CACHE_TTL_MS);
}

/// The site's identity secret as D1 has it now, not as remembered: a rotated secret stops
/// verifying at once in every isolate. Read only when a visitor's identity comes with a hash.
pub async fn current_identity_secret(
    db: &D1Database,
    site: &str,
) -> worker::Result<Option<String>> {
    from_row! {
        struct Row {
            identity_secret: Option<String>,
        }
    }
    let row = db
        .prepare("SELECT identity_secret FROM sites WHERE id = ?1")
        .bind(&[site.into()])?
        .first_row::<Row>()
        .await?;
    Ok(row
        .and_then(|r| r.identity_secret)
        .filter(|s| !s.is_empty()))
}

/// Drops what this isolate remembers of sites and origins, after a site's settings changed:
/// an owner who just allowed an origin and reloads the page there is answered from D1 (other
/// isolates still answer from memory for up to a minute).
pub fn forget_cached() {
    CACHE.with(|c| c.forget_all());
    ORIGINS.with(|c| c.forget_all());
}

/// Whether any site lists `origin` among its allowed origins (cached briefly); `None` when D1
/// cannot say and nothing is remembered. Only D1's answers are remembered: a failed read is
/// not taken for "no site", which would refuse a listed origin for a minute.
pub async fn origin_allowed_anywhere(db: &D1Database, origin: &str, now: i64) -> Option<bool> {
    if origin.len() > 200 {
        return Some(false);
    }
    if let Some(allowed) = ORIGINS.with(|c| c.fresh(origin, now)) {
        return Some(allowed);
    }
    from_row! {
        struct Row {
            n: u32,
        }
    }
    let query = db
        .prepare(
            "SELECT COUNT(*) AS n FROM sites WHERE EXISTS
               (SELECT 1 FROM json_each(sites.allowed_origins) WHERE value = ?1)",
        )
        .bind(&[origin.into()]);
    let row = match query {
        Ok(statement) => statement.first_row::<Row>().await,
        Err(e) => Err(e),
    };
    match row {
        Ok(row) => {
            let allowed = row.is_some_and(|r| r.n > 0);
            ORIGINS.with(|c| c.remember(origin, allowed, now));
            Some(allowed)
        }
        // A stale answer beats none while D1 is down, as for the sites themselves.
        Err(_) => ORIGINS.with(|c| c.any(origin)),
    }
}

impl Site {
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == origin)
    }
}

//! Token buckets for flood control; the caller passes the time.

use serde::{Deserialize, Serialize};

/// A bucket's shape: how many actions in a burst, and how fast it refills.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub burst: f64,
    pub per_second: f64,
}

impl Rate {
    /// Parses `"<burst>/<per second>"`, e.g. `"20/1"` or `"10/0.1"`.
    pub fn parse(text: &str) -> Option<Rate> {
        let (burst, per_second) = text.trim().split_once('/')?;
        let rate = Rate {
            burst: burst.trim().parse().ok()?,
            per_second: per_second.trim().parse().ok()?,
        };
        (rate.burst >= 1.0
            && rate.per_second > 0.0
            && rate.burst.is_finite()
            && rate.per_second.is_finite())
        .then_some(rate)
    }

    /// Visitor messages: a burst of 20, then one a second.
    pub const VISITOR_MESSAGES: Rate = Rate {
        burst: 20.0,
        per_second: 1.0,
    };
    /// Agent messages: agents paste and answer fast.
    pub const AGENT_MESSAGES: Rate = Rate {
        burst: 60.0,
        per_second: 5.0,
    };
    /// Messages from one IP address into one conversation, whoever sends them.
    pub const IP_MESSAGES: Rate = Rate {
        burst: 120.0,
        per_second: 5.0,
    };
    /// Typing notices, per participant.
    pub const TYPING: Rate = Rate {
        burst: 5.0,
        per_second: 2.0,
    };
    /// Visitor sessions and conversations created from one IP address.
    pub const IP_CREATIONS: Rate = Rate {
        burst: 30.0,
        per_second: 0.5,
    };
    /// File uploads per participant.
    pub const UPLOADS: Rate = Rate {
        burst: 10.0,
        per_second: 0.2,
    };
    /// File uploads per IP address (offices share one).
    pub const IP_UPLOADS: Rate = Rate {
        burst: 60.0,
        per_second: 1.0,
    };
    /// Page views one visitor reports (each is a stored row): a single-page app's quick
    /// navigation passes, a script replaying its token does not.
    pub const PAGE_VIEWS: Rate = Rate {
        burst: 30.0,
        per_second: 0.5,
    };
    /// Login attempts per IP address and per e-mail.
    pub const LOGINS: Rate = Rate {
        burst: 10.0,
        per_second: 0.1,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TokenBucket {
    tokens: f64,
    updated_ms: i64,
}

impl TokenBucket {
    pub fn full(rate: Rate, now_ms: i64) -> TokenBucket {
        TokenBucket {
            tokens: rate.burst,
            updated_ms: now_ms,
        }
    }

    /// Takes one token, or says how many milliseconds until one is available.
    pub fn try_take(&mut self, rate: Rate, now_ms: i64) -> Result<(), u64> {
        let elapsed_s = (now_ms - self.updated_ms).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed_s * rate.per_second).min(rate.burst);
        self.updated_ms = now_ms.max(self.updated_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait_s = (1.0 - self.tokens) / rate.per_second;
            Err((wait_s * 1000.0).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_configured_rates() {
        assert_eq!(
            Rate::parse("20/1"),
            Some(Rate {
                burst: 20.0,
                per_second: 1.0
            })
        );
        assert_eq!(
            Rate::parse(" 10 / 0.1 "),
            Some(Rate {
                burst: 10.0,
                per_second: 0.1
            })
        );
        assert_eq!(Rate::parse("0/1"), None);
        assert_eq!(Rate::parse("5/0"), None);
        assert_eq!(Rate::parse("five"), None);
    }

    #[test]
    fn burst_then_refill() {
        let rate = Rate {
            burst: 3.0,
            per_second: 1.0,
        };
        let mut b = TokenBucket::full(rate, 0);
        assert!(b.try_take(rate, 0).is_ok());
        assert!(b.try_take(rate, 0).is_ok());
        assert!(b.try_take(rate, 0).is_ok());
        assert_eq!(b.try_take(rate, 0), Err(1000));
        assert_eq!(b.try_take(rate, 500), Err(500));
        assert!(b.try_take(rate, 1000).is_ok());
    }

    #[test]
    fn clock_going_backwards_does_not_mint_tokens() {
        let rate = Rate {
            burst: 1.0,
            per_second: 1.0,
        };
        let mut b = TokenBucket::full(rate, 10_000);
        assert!(b.try_take(rate, 10_000).is_ok());
        assert!(b.try_take(rate, 0).is_err());
        assert!(b.try_take(rate, 10_500).is_err());
    }
}

//! Team reports for a date range, in the site's time zone: conversations per day, first response
//! and resolution times (median and p90), missed conversations, per-agent figures, busiest
//! hours, countries, sources and satisfaction. Pure: the shell reads one summary row per
//! conversation from D1 and this module does the arithmetic.

use std::collections::BTreeMap;

use chrono::Timelike;
use serde::{Deserialize, Serialize};

use crate::zone;

/// What the report needs to know about one conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationFacts {
    pub id: String,
    pub created_at: i64,
    pub first_visitor_message_at: Option<i64>,
    pub first_agent_message_at: Option<i64>,
    pub first_closed_at: Option<i64>,
    pub assignee: Option<String>,
    pub agent_messages: u32,
    pub visitor_messages: u32,
    pub rating: Option<u8>,
    pub country: Option<String>,
    /// `utm_source`, else the referrer's host, else `direct`.
    pub source: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub count: usize,
    pub median_ms: Option<i64>,
    pub p90_ms: Option<i64>,
}

/// Median and 90th percentile (nearest rank) of a set of durations.
pub fn spread(mut values: Vec<i64>) -> Spread {
    values.sort_unstable();
    let rank = |q: f64| {
        if values.is_empty() {
            None
        } else {
            let index = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            Some(values[index])
        }
    };
    Spread {
        count: values.len(),
        median_ms: rank(0.5),
        p90_ms: rank(0.9),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentFigures {
    pub agent: String,
    /// The agent's name today, filled in by the caller (reports keep working for agents since
    /// removed, by id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub conversations: usize,
    pub messages: u32,
    pub first_response: Spread,
    pub satisfaction: Option<f64>,
    pub missed: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Satisfaction {
    pub ratings: usize,
    pub average: Option<f64>,
    /// Counts of scores 1 to 5.
    pub distribution: [usize; 5],
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub timezone: String,
    pub conversations: usize,
    /// Local dates (`YYYY-MM-DD`) and the conversations started on each.
    pub per_day: BTreeMap<String, usize>,
    pub first_response: Spread,
    pub resolution: Spread,
    pub missed: u32,
    pub per_agent: Vec<AgentFigures>,
    /// Conversations started in each local hour of the day, 0 to 23.
    pub busiest_hours: [usize; 24],
    pub by_country: BTreeMap<String, usize>,
    pub by_source: BTreeMap<String, usize>,
    pub satisfaction: Satisfaction,
}

fn average(scores: &[u8]) -> Option<f64> {
    (!scores.is_empty())
        .then(|| scores.iter().map(|&s| f64::from(s)).sum::<f64>() / scores.len() as f64)
}

/// Builds the report; `missed` counts misses per agent in the same range.
pub fn build(
    timezone: &str,
    facts: &[ConversationFacts],
    missed: &BTreeMap<String, u32>,
) -> Report {
    let tz = zone::or_utc(timezone);
    let local = |ms: i64| zone::local(tz, ms);
    let mut report = Report {
        timezone: tz.to_string(),
        conversations: facts.len(),
        missed: missed.values().sum(),
        ..Report::default()
    };
    let mut first_responses = Vec::new();
    let mut resolutions = Vec::new();
    let mut scores = Vec::new();
    let mut agents: BTreeMap<String, (usize, u32, Vec<i64>, Vec<u8>)> = BTreeMap::new();
    for f in facts {
        if let Some(t) = local(f.created_at) {
            *report.per_day.entry(zone::iso_date(t.date())).or_default() += 1;
            report.busiest_hours[t.hour() as usize] += 1;
        }
        let first_response = match (f.first_visitor_message_at, f.first_agent_message_at) {
            (Some(v), Some(a)) if a >= v => Some(a - v),
            _ => None,
        };
        if let Some(ms) = first_response {
            first_responses.push(ms);
        }
        if let Some(closed) = f.first_closed_at {
            resolutions.push((closed - f.created_at).max(0));
        }
        if let Some(score) = f.rating.filter(|s| (1..=5).contains(s)) {
            scores.push(score);
            report.satisfaction.distribution[usize::from(score) - 1] += 1;
        }
        *report
            .by_country
            .entry(f.country.clone().unwrap_or_else(|| "unknown".into()))
            .or_default() += 1;
        *report
            .by_source
            .entry(f.source.clone().unwrap_or_else(|| "direct".into()))
            .or_default() += 1;
        if let Some(agent) = &f.assignee {
            let entry = agents.entry(agent.clone()).or_default();
            entry.0 += 1;
            entry.1 += f.agent_messages;
            entry.2.extend(first_response);
            entry.3.extend(f.rating.filter(|s| (1..=5).contains(s)));
        }
    }
    for agent in missed.keys() {
        agents.entry(agent.clone()).or_default();
    }
    report.first_response = spread(first_responses);
    report.resolution = spread(resolutions);
    report.satisfaction.ratings = scores.len();
    report.satisfaction.average = average(&scores);
    report.per_agent = agents
        .into_iter()
        .map(
            |(agent, (conversations, messages, responses, ratings))| AgentFigures {
                missed: missed.get(&agent).copied().unwrap_or(0),
                agent,
                name: None,
                conversations,
                messages,
                first_response: spread(responses),
                satisfaction: average(&ratings),
            },
        )
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_uses_nearest_rank() {
        assert_eq!(spread(vec![]), Spread::default());
        let s = spread((1..=10).map(|n| n * 1000).collect());
        assert_eq!(
            (s.count, s.median_ms, s.p90_ms),
            (10, Some(5000), Some(9000))
        );
        assert_eq!(spread(vec![7]).p90_ms, Some(7));
    }

    #[test]
    fn days_and_hours_follow_the_sites_time_zone() {
        crate::zone::testing::install();
        // 2026-11-22 23:30 UTC is already 2026-11-23 07:30 in Shanghai.
        let late = 1_795_390_200_000;
        let facts = vec![ConversationFacts {
            id: "c_1".into(),
            created_at: late,
            ..Default::default()
        }];
        let shanghai = build("Asia/Shanghai", &facts, &BTreeMap::new());
        assert_eq!(shanghai.per_day.keys().collect::<Vec<_>>(), ["2026-11-23"]);
        assert_eq!(shanghai.busiest_hours[7], 1);
        let utc = build("UTC", &facts, &BTreeMap::new());
        assert_eq!(utc.per_day.keys().collect::<Vec<_>>(), ["2026-11-22"]);
        assert_eq!(utc.busiest_hours[23], 1);
    }

    #[test]
    fn response_resolution_agents_and_satisfaction() {
        let fact =
            |id: &str, agent: &str, response: i64, resolution: i64, rating: u8| ConversationFacts {
                id: id.into(),
                created_at: 0,
                first_visitor_message_at: Some(1000),
                first_agent_message_at: Some(1000 + response),
                first_closed_at: Some(resolution),
                assignee: Some(agent.into()),
                agent_messages: 2,
                visitor_messages: 1,
                rating: Some(rating),
                country: Some("DE".into()),
                source: None,
            };
        let facts = vec![
            fact("c_1", "a_1", 10_000, 60_000, 5),
            fact("c_2", "a_1", 30_000, 120_000, 3),
            fact("c_3", "a_2", 20_000, 90_000, 4),
        ];
        let missed = BTreeMap::from([("a_2".to_string(), 2)]);
        let r = build("UTC", &facts, &missed);
        assert_eq!(r.first_response.median_ms, Some(20_000));
        assert_eq!(r.first_response.p90_ms, Some(30_000));
        assert_eq!(r.resolution.median_ms, Some(90_000));
        assert_eq!(r.missed, 2);
        assert_eq!(r.satisfaction.average, Some(4.0));
        assert_eq!(r.satisfaction.distribution, [0, 0, 1, 1, 1]);
        assert_eq!(r.by_country["DE"], 3);
        assert_eq!(r.by_source["direct"], 3);
        let a1 = &r.per_agent[0];
        assert_eq!(
            (a1.agent.as_str(), a1.conversations, a1.messages),
            ("a_1", 2, 4)
        );
        assert_eq!(a1.satisfaction, Some(4.0));
        assert_eq!(r.per_agent[1].missed, 2);
    }
}

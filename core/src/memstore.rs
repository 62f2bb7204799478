//! An in-memory [`Store`], for tests, property tests and the benchmark's baseline.

use std::collections::{BTreeMap, HashMap};

use crate::conversation::{Meta, Store};
use crate::protocol::{Event, EventPayload, Status};

#[derive(Debug, Default, Clone)]
pub struct MemStore {
    meta: Option<Meta>,
    events: Vec<Event>,
    client_ids: HashMap<(String, String), u64>,
    reads: BTreeMap<String, u64>,
    assigned_since: Option<i64>,
    /// When set, the next write fails (to test that nothing is acknowledged then).
    pub fail_next_write: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemStoreError;

impl std::fmt::Display for MemStoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected storage failure")
    }
}

impl MemStore {
    pub fn log(&self) -> &[Event] {
        &self.events
    }

    fn check_write(&mut self) -> Result<(), MemStoreError> {
        if std::mem::take(&mut self.fail_next_write) {
            Err(MemStoreError)
        } else {
            Ok(())
        }
    }
}

impl Store for MemStore {
    type Error = MemStoreError;

    fn load_meta(&self) -> Result<Option<Meta>, MemStoreError> {
        Ok(self.meta.as_ref().map(|m| {
            let mut meta = m.clone();
            meta.assigned_since = self.assigned_since;
            meta.head = self.events.last().map_or(0, |e| e.seq);
            for e in &self.events {
                match &e.payload {
                    EventPayload::Closed {} => meta.status = Status::Closed,
                    EventPayload::Reopened {} => meta.status = Status::Open,
                    EventPayload::Assigned { agent } => meta.assignee = Some(agent.id.clone()),
                    _ => {}
                }
            }
            meta
        }))
    }

    fn create(&mut self, meta: &Meta, first: &Event) -> Result<(), MemStoreError> {
        self.check_write()?;
        self.meta = Some(meta.clone());
        self.events.push(first.clone());
        Ok(())
    }

    fn append(&mut self, events: &[Event]) -> Result<(), MemStoreError> {
        self.check_write()?;
        for event in events {
            if let Some(id) = &event.client_msg_id {
                self.client_ids
                    .insert((event.author.id.clone(), id.clone()), event.seq);
            }
            self.events.push(event.clone());
        }
        Ok(())
    }

    fn seq_for_client_msg(&self, author: &str, id: &str) -> Result<Option<u64>, MemStoreError> {
        Ok(self
            .client_ids
            .get(&(author.to_string(), id.to_string()))
            .copied())
    }

    fn events_after(&self, after: u64, limit: u32) -> Result<Vec<Event>, MemStoreError> {
        Ok(self
            .events
            .iter()
            .filter(|e| e.seq > after)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    fn events_before(&self, before: u64, limit: u32) -> Result<Vec<Event>, MemStoreError> {
        let older: Vec<&Event> = self.events.iter().filter(|e| e.seq < before).collect();
        let skip = older.len().saturating_sub(limit as usize);
        Ok(older.into_iter().skip(skip).cloned().collect())
    }

    fn reads(&self) -> Result<BTreeMap<String, u64>, MemStoreError> {
        Ok(self.reads.clone())
    }

    fn save_read(&mut self, participant: &str, seq: u64) -> Result<(), MemStoreError> {
        self.check_write()?;
        self.reads.insert(participant.to_string(), seq);
        Ok(())
    }

    fn save_assigned_since(&mut self, since: i64) -> Result<(), MemStoreError> {
        self.check_write()?;
        self.assigned_since = Some(since);
        Ok(())
    }

    fn rating_since_close(&self) -> Result<Option<Event>, MemStoreError> {
        for event in self.events.iter().rev() {
            match event.payload {
                EventPayload::Rated { .. } => return Ok(Some(event.clone())),
                EventPayload::Closed {} => return Ok(None),
                _ => {}
            }
        }
        Ok(None)
    }
}

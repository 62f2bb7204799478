//! Callers waiting for an answer, each under a key and until a deadline. While any wait, one
//! timer answers the overdue ones "no" (the answer type's default): one timer for all of them
//! rather than one each, because a timer per message is a JS closure and a runtime timer the
//! garbage collector frees.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use worker::State;

use crate::platform::now_ms;

/// How often overdue answers are looked for while anyone waits.
const WATCH_MS: u64 = 1_000;

pub struct Answers<K, V = bool> {
    waiting: RefCell<BTreeMap<K, (i64, oneshot::Sender<V>)>>,
    watching: Cell<bool>,
    /// Answers that did not come in time since `take_overdue` last looked.
    overdue: Cell<u32>,
}

impl<K: Ord + Copy + 'static, V: Copy + Default + 'static> Answers<K, V> {
    pub fn new() -> Rc<Answers<K, V>> {
        Rc::new(Answers {
            waiting: RefCell::new(BTreeMap::new()),
            watching: Cell::new(false),
            overdue: Cell::new(0),
        })
    }

    /// Waits for the answer under `key`, "no" once `timeout_ms` from now has passed.
    pub fn wait(self: &Rc<Self>, state: &State, key: K, timeout_ms: i64) -> oneshot::Receiver<V> {
        let (answer, answered) = oneshot::channel();
        self.waiting
            .borrow_mut()
            .insert(key, (now_ms() + timeout_ms, answer));
        self.watch(state);
        answered
    }

    pub fn answer(&self, key: K, answer: V) {
        if let Some((_, waiter)) = self.waiting.borrow_mut().remove(&key) {
            let _ = waiter.send(answer);
        }
    }

    /// How many answers did not come in time since the last look.
    pub fn take_overdue(&self) -> u32 {
        self.overdue.replace(0)
    }

    /// Answers everyone waiting "no" (the default).
    pub fn refuse_all(&self) {
        let waiting = std::mem::take(&mut *self.waiting.borrow_mut());
        for (_, (_, waiter)) in waiting {
            let _ = waiter.send(V::default());
        }
    }

    fn watch(self: &Rc<Self>, state: &State) {
        if self.watching.replace(true) {
            return;
        }
        let me = self.clone();
        state.wait_until(async move {
            while !me.waiting.borrow().is_empty() {
                worker::Delay::from(Duration::from_millis(WATCH_MS)).await;
                let now = now_ms();
                let overdue: Vec<K> = me
                    .waiting
                    .borrow()
                    .iter()
                    .filter(|(_, (deadline, _))| now >= *deadline)
                    .map(|(key, _)| *key)
                    .collect();
                me.overdue.set(me.overdue.get() + overdue.len() as u32);
                for key in overdue {
                    me.answer(key, V::default());
                }
            }
            me.watching.set(false);
        });
    }
}

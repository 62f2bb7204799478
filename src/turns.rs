//! One at a time, first come first served: an object's handlers interleave wherever they wait,
//! and some work (a participant's socket frames) must keep its arrival order across those waits.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use futures::channel::oneshot;

#[derive(Default)]
pub struct Turns {
    busy: Cell<bool>,
    waiting: RefCell<VecDeque<oneshot::Sender<()>>>,
}

/// The turn being had; the next one in line gets it when this is dropped.
pub struct Turn<'a>(&'a Turns);

impl Turns {
    /// Waits until every earlier caller's turn is over.
    pub async fn take(&self) -> Turn<'_> {
        if self.busy.replace(true) {
            let (handed, over) = oneshot::channel();
            self.waiting.borrow_mut().push_back(handed);
            // The turn is handed over with `busy` still set; a dropped sender cannot happen
            // while `Turns` lives.
            let _ = over.await;
        }
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        loop {
            let next = self.0.waiting.borrow_mut().pop_front();
            let Some(handed) = next else {
                self.0.busy.set(false);
                return;
            };
            // A waiter that gave up (its future dropped) is skipped.
            if handed.send(()).is_ok() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt;
    use std::rc::Rc;

    #[test]
    fn turns_are_had_in_arrival_order_across_waits() {
        let mut pool = LocalPool::new();
        let turns = Rc::new(Turns::default());
        let log = Rc::new(RefCell::new(Vec::new()));
        let (release, released) = oneshot::channel::<()>();
        let mut released = Some(released);
        for i in 0..4 {
            let (turns, log) = (turns.clone(), log.clone());
            let wait = if i == 0 { released.take() } else { None };
            pool.spawner()
                .spawn_local(async move {
                    let _turn = turns.take().await;
                    log.borrow_mut().push(format!("start {i}"));
                    if let Some(wait) = wait {
                        let _ = wait.await;
                    }
                    log.borrow_mut().push(format!("end {i}"));
                })
                .unwrap();
        }
        pool.run_until_stalled();
        assert_eq!(*log.borrow(), ["start 0"]);
        release.send(()).unwrap();
        pool.run_until_stalled();
        let expected: Vec<String> = (0..4)
            .flat_map(|i| [format!("start {i}"), format!("end {i}")])
            .collect();
        assert_eq!(*log.borrow(), expected);
        assert!(!turns.busy.get());
    }
}

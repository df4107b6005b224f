//! Progress of long fits: a callback called after each chunk of a batch
//! ([`Batch::with_progress`](super::batch::Batch::with_progress)) or of a multistart fit
//! ([`curve_fit_with_progress`](super::curve_fit_with_progress)).
//!
//! **When and where it is called.** After each chunk (one execution of the batch program, or a
//! problem fitted alone) has finished, on the thread that called the fit. The chunks run side
//! by side on worker threads; each worker sends "chunk done" over a channel and goes on with its
//! next chunk at once, and the calling thread, which otherwise only waits for the workers,
//! counts and calls the callback. So no two calls overlap, every count is one more chunk than
//! the call before (monotone in the order the calls are made, no reordering between threads
//! as with a shared atomic counter read by each worker), and no worker ever waits for the
//! callback or holds a lock while it runs: a slow callback delays no chunk.
//!
//! **A panicking callback.** The panic is caught (`catch_unwind`); the callback is not called
//! again and the fit goes on and returns what it would have without one. A panic never crosses
//! the API, and no lock is poisoned (none is held while the callback runs).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where a batch (or a multistart fit) stands, given to a progress callback after each chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Chunks finished so far, this one included (1, 2, … `chunks_total`).
    pub chunks_done: usize,
    /// Chunks of the job: executions of the batch program, plus one per problem fitted alone
    /// (extreme units). For a multistart fit, the total known so far (see
    /// [`curve_fit_with_progress`](super::curve_fit_with_progress)).
    pub chunks_total: usize,
    /// Problems with a result so far: those refused at validation (they have their error from
    /// the start) and those of the finished chunks.
    pub problems_done: usize,
    /// Problems of the job ([`Batch::len`](super::batch::Batch::len) for a batch).
    pub problems_total: usize,
    /// Time since the fit was called.
    pub elapsed: Duration,
}

impl Progress {
    /// Problems finished per second so far (0 before any time has passed).
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.problems_done as f64 / secs
        } else {
            0.0
        }
    }
}

/// A progress callback: called with each [`Progress`], on the calling thread (module docs).
pub type ProgressFn<'a> = &'a (dyn Fn(&Progress) + Sync);

/// A callback behind `catch_unwind`: after its first panic it is never called again.
pub(crate) struct Guarded<'a> {
    callback: Option<ProgressFn<'a>>,
    broken: AtomicBool,
}

impl<'a> Guarded<'a> {
    pub(crate) fn new(callback: Option<ProgressFn<'a>>) -> Self {
        Guarded {
            callback,
            broken: AtomicBool::new(false),
        }
    }

    /// Whether there is a callback to call (a broken one included: the counting goes on).
    pub(crate) fn is_set(&self) -> bool {
        self.callback.is_some()
    }

    /// Calls the callback unless it has panicked before; a panic now is caught and ends the calls.
    pub(crate) fn call(&self, progress: &Progress) {
        let Some(callback) = self.callback else { return };
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        if catch_unwind(AssertUnwindSafe(|| callback(progress))).is_err() {
            self.broken.store(true, Ordering::Relaxed);
        }
    }
}

/// The counts of one batch, reported through a [`Guarded`] callback after each chunk.
pub(crate) struct Tracker<'a> {
    callback: Guarded<'a>,
    chunks_total: usize,
    problems_total: usize,
    chunks_done: AtomicUsize,
    problems_done: AtomicUsize,
    start: Instant,
}

impl<'a> Tracker<'a> {
    /// A job of `chunks_total` chunks and `problems_total` problems, `settled` of which already
    /// have their result, started at `start`.
    pub(crate) fn new(
        callback: Option<ProgressFn<'a>>,
        chunks_total: usize,
        problems_total: usize,
        settled: usize,
        start: Instant,
    ) -> Self {
        Tracker {
            callback: Guarded::new(callback),
            chunks_total,
            problems_total,
            chunks_done: AtomicUsize::new(0),
            problems_done: AtomicUsize::new(settled),
            start,
        }
    }

    /// One more chunk, of `problems` problems, has finished: counts it and calls the callback.
    pub(crate) fn chunk_done(&self, problems: usize) {
        let chunks_done = self.chunks_done.fetch_add(1, Ordering::Relaxed) + 1;
        let problems_done = self.problems_done.fetch_add(problems, Ordering::Relaxed) + problems;
        self.callback.call(&Progress {
            chunks_done,
            chunks_total: self.chunks_total,
            problems_done,
            problems_total: self.problems_total,
            elapsed: self.start.elapsed(),
        });
    }

    /// Runs `work`, which calls the notifier it is given with a chunk's number of problems as
    /// each chunk finishes (from any thread), and reports each of those chunks on this thread
    /// as it comes. Without a callback `work` runs here with a notifier that does nothing.
    pub(crate) fn run<T: Send>(&self, work: impl FnOnce(&(dyn Fn(usize) + Sync)) -> T + Send) -> T {
        if !self.callback.is_set() {
            return work(&|_| {});
        }
        let (tx, rx) = std::sync::mpsc::channel::<usize>();
        std::thread::scope(|s| {
            let worker = s.spawn(move || {
                let notify = move |problems: usize| {
                    // The receiver lives until every sender is gone.
                    let _ = tx.send(problems);
                };
                work(&notify)
            });
            // Ends when `work` returns (or unwinds) and drops the sender.
            for problems in rx {
                self.chunk_done(problems);
            }
            worker.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn counts_are_monotone_and_reported_on_the_calling_thread_from_many_workers() {
        let seen = Mutex::new(Vec::new());
        let me = std::thread::current().id();
        let callback = |p: &Progress| {
            assert_eq!(std::thread::current().id(), me);
            seen.lock().unwrap().push((p.chunks_done, p.problems_done));
        };
        let tracker = Tracker::new(Some(&callback), 40, 85, 5, Instant::now());
        let out = tracker.run(|notify| {
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| (0..10).for_each(|_| notify(2)));
                }
            });
            7
        });
        assert_eq!(out, 7);
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), 40);
        for (i, &(c, p)) in seen.iter().enumerate() {
            assert_eq!((c, p), (i + 1, 5 + 2 * (i + 1)));
        }
    }

    #[test]
    fn a_panicking_callback_is_called_once_and_the_work_goes_on() {
        let calls = AtomicUsize::new(0);
        let callback = |_: &Progress| {
            calls.fetch_add(1, Ordering::Relaxed);
            panic!("callback fails");
        };
        let tracker = Tracker::new(Some(&callback), 3, 3, 0, Instant::now());
        let out = tracker.run(|notify| {
            (0..3).for_each(|_| notify(1));
            "done"
        });
        tracker.chunk_done(1);
        assert_eq!(out, "done");
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn rate_is_problems_per_second() {
        let p = Progress {
            chunks_done: 1,
            chunks_total: 2,
            problems_done: 50,
            problems_total: 100,
            elapsed: Duration::from_millis(500),
        };
        assert_eq!(p.rate(), 100.0);
        assert_eq!(
            Progress {
                elapsed: Duration::ZERO,
                ..p
            }
            .rate(),
            0.0
        );
    }
}

//! The progress line of long jobs (`nlsq batch`, `nlsq fit --starts K`): chunks done of the
//! total, fits done and their rate, on stderr when it is a terminal and once the job has run
//! for more than a second; cleared when the job ends, so the output is what it is without it.

use std::io::IsTerminal;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nlsq::fit::Progress;

/// A job shorter than this shows no line.
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// How often the shown line redraws (its spinner and elapsed time) between chunks.
const TICK: Duration = Duration::from_millis(100);

/// The progress line of one job; dropping it clears the line.
pub struct Line {
    bar: ProgressBar,
    /// Dropped to tell the timer that the job has ended.
    stop: Option<Sender<()>>,
    /// Shows the line after [`SHOW_AFTER`] unless told to stop first.
    timer: Option<JoinHandle<()>>,
}

impl Line {
    /// A hidden line that shows itself on stderr after [`SHOW_AFTER`]; `None` when stderr is
    /// not a terminal (then nothing is drawn at all).
    pub fn start() -> Option<Line> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed}] {msg}") {
            bar.set_style(style);
        }
        bar.set_message("fitting");
        let (stop, stopped) = mpsc::channel::<()>();
        let shown = bar.clone();
        let timer = std::thread::spawn(move || {
            // A message never comes: the sender is dropped when the job ends.
            if let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(SHOW_AFTER) {
                shown.set_draw_target(ProgressDrawTarget::stderr());
                shown.enable_steady_tick(TICK);
            }
        });
        Some(Line {
            bar,
            stop: Some(stop),
            timer: Some(timer),
        })
    }

    /// Shows where the job stands after a chunk.
    pub fn update(&self, p: &Progress) {
        self.bar.set_message(message(p));
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(timer) = self.timer.take() {
            let _ = timer.join();
        }
        self.bar.finish_and_clear();
    }
}

/// The text of the line after a chunk: `chunk 3/8, 384/1024 fits, 1250 fits/s`.
fn message(p: &Progress) -> String {
    format!(
        "chunk {}/{}, {}/{} fits, {:.0} fits/s",
        p.chunks_done,
        p.chunks_total,
        p.problems_done,
        p.problems_total,
        p.rate()
    )
}

//! Capturing a command's output without letting it flood memory: the head and the tail are kept in
//! memory, and the whole output (up to the cap) is spooled to a file the caller may read.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Bytes kept from the start and from the end of the output.
const KEEP: usize = 32 * 1024;

/// What a command printed (stdout and stderr interleaved as they came).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub head: Vec<u8>,
    /// The last bytes, when the output was longer than the head; empty otherwise.
    pub tail: Vec<u8>,
    pub total_bytes: u64,
}

impl Captured {
    /// Head and tail as text, with a marker where bytes were left out.
    pub fn text(&self) -> String {
        let head = String::from_utf8_lossy(&self.head);
        if self.tail.is_empty() {
            return head.into_owned();
        }
        let omitted = self.total_bytes - (self.head.len() + self.tail.len()) as u64;
        format!("{head}\n… {omitted} bytes omitted …\n{}", String::from_utf8_lossy(&self.tail))
    }
}

/// Head, tail and count, updated as chunks arrive.
#[derive(Debug, Default)]
struct Progress {
    captured: Captured,
    tail: VecDeque<u8>,
}

impl Progress {
    fn add(&mut self, chunk: &[u8]) {
        let room = KEEP.saturating_sub(self.captured.head.len());
        let (to_head, rest) = chunk.split_at(room.min(chunk.len()));
        self.captured.head.extend_from_slice(to_head);
        // The last KEEP bytes of the tail and `rest` together, without a step per byte.
        let rest = &rest[rest.len().saturating_sub(KEEP)..];
        let overflow = (self.tail.len() + rest.len()).saturating_sub(KEEP);
        self.tail.drain(..overflow);
        self.tail.extend(rest);
        self.captured.total_bytes += chunk.len() as u64;
    }

    fn snapshot(&self) -> Captured {
        Captured { tail: self.tail.iter().copied().collect(), ..self.captured.clone() }
    }
}

pub(crate) struct Capture {
    over: Arc<AtomicBool>,
    progress: Arc<Mutex<Progress>>,
    thread: JoinHandle<()>,
}

impl Capture {
    pub(crate) fn start(
        mut reader: std::io::PipeReader,
        limit: u64,
        mut spool: std::fs::File,
        stream: Option<std::sync::mpsc::Sender<Vec<u8>>>,
    ) -> Capture {
        let over = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Mutex::new(Progress::default()));
        let (over_seen, shared) = (over.clone(), progress.clone());
        let thread = std::thread::spawn(move || {
            let mut buffer = vec![0; 64 * 1024];
            let mut total = 0u64;
            while let Ok(read) = reader.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                if total <= limit {
                    // A full disk only loses the spooled copy; head and tail are still kept.
                    let _ = std::io::Write::write_all(&mut spool, &buffer[..read]);
                }
                total += read as u64;
                if let Some(stream) = &stream {
                    let _ = stream.send(buffer[..read].to_vec());
                }
                if let Ok(mut progress) = shared.lock() {
                    progress.add(&buffer[..read]);
                }
                if total > limit {
                    over_seen.store(true, Ordering::Relaxed);
                }
            }
        });
        Capture { over, progress, thread }
    }

    /// Set once the output passed the limit.
    pub(crate) fn over_limit_flag(&self) -> Arc<AtomicBool> {
        self.over.clone()
    }

    fn snapshot(&self) -> Captured {
        self.progress.lock().map(|p| p.snapshot()).unwrap_or_default()
    }

    /// The output, once the pipe is closed.
    pub(crate) fn finish(self) -> Captured {
        let Capture { progress, thread, .. } = self;
        let _ = thread.join();
        progress.lock().map(|p| p.snapshot()).unwrap_or_default()
    }

    /// The output, once the pipe is closed or `wait` has passed: a process that escaped its group
    /// may hold the pipe open, and what it prints after that is not waited for.
    pub(crate) fn finish_within(self, wait: std::time::Duration) -> Captured {
        let deadline = std::time::Instant::now() + wait;
        while !self.thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::park_timeout(std::time::Duration::from_millis(1));
        }
        self.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the chunks: the head is the first KEEP bytes, the tail the last KEEP after it.
    #[test]
    fn head_and_tail_are_the_first_and_last_bytes_in_any_chunking() {
        let all: Vec<u8> = (0..5 * KEEP + 123).map(|i| (i * 7 % 251) as u8).collect();
        for sizes in [&[1usize][..], &[7, 4096, 1], &[KEEP - 1, 2, KEEP + 5], &[3 * KEEP], &[100_000, 17]] {
            let mut progress = Progress { captured: Captured::default(), tail: VecDeque::new() };
            let mut at = 0;
            for size in sizes.iter().cycle() {
                if at == all.len() {
                    break;
                }
                let end = (at + size).min(all.len());
                progress.add(&all[at..end]);
                at = end;
            }
            let captured = progress.snapshot();
            assert_eq!(captured.head, all[..KEEP], "{sizes:?}");
            assert_eq!(captured.tail, all[all.len() - KEEP..], "{sizes:?}");
            assert_eq!(captured.total_bytes, all.len() as u64);
        }
    }
}

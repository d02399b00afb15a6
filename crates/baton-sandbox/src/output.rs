//! Capturing a command's output without letting it flood memory: the head and the tail are kept in
//! memory, and the whole output (up to the cap) is spooled to a file for the blob store.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

pub(crate) struct Capture {
    over: Arc<AtomicBool>,
    thread: JoinHandle<Captured>,
}

impl Capture {
    pub(crate) fn start(mut reader: std::io::PipeReader, limit: u64, mut spool: std::fs::File) -> Capture {
        let over = Arc::new(AtomicBool::new(false));
        let over_seen = over.clone();
        let thread = std::thread::spawn(move || {
            let mut captured = Captured::default();
            let mut tail = std::collections::VecDeque::with_capacity(KEEP);
            let mut buffer = vec![0; 64 * 1024];
            while let Ok(read) = reader.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                if captured.total_bytes <= limit {
                    // A full disk only loses the spooled copy; head and tail are still kept.
                    let _ = std::io::Write::write_all(&mut spool, &buffer[..read]);
                }
                let mut chunk = &buffer[..read];
                let room = KEEP.saturating_sub(captured.head.len());
                let (to_head, rest) = chunk.split_at(room.min(chunk.len()));
                captured.head.extend_from_slice(to_head);
                chunk = rest;
                for &byte in chunk.iter().rev().take(KEEP).rev() {
                    if tail.len() == KEEP {
                        tail.pop_front();
                    }
                    tail.push_back(byte);
                }
                captured.total_bytes += read as u64;
                if captured.total_bytes > limit {
                    over_seen.store(true, Ordering::Relaxed);
                }
            }
            captured.tail = tail.into_iter().collect();
            captured
        });
        Capture { over, thread }
    }

    /// Set once the output passed the limit.
    pub(crate) fn over_limit_flag(&self) -> Arc<AtomicBool> {
        self.over.clone()
    }

    pub(crate) fn finish(self) -> Captured {
        self.thread.join().unwrap_or_default()
    }
}

//! The guest console: everything the guest writes to its serial port goes into a scroll-back
//! ring (replayed to a reader when it attaches) and to every attached reader.
//!
//! Readers get chunks over bounded channels; the vCPU thread that produced the bytes never
//! blocks on a slow reader: a reader whose queue is full is dropped (its connection ends).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};

/// Default scroll-back size.
pub const DEFAULT_SCROLLBACK: usize = 64 * 1024;
/// Chunks a reader may have queued before it counts as stalled.
const READER_QUEUE: usize = 4096;

struct Inner {
    scrollback: VecDeque<u8>,
    capacity: usize,
    readers: Vec<SyncSender<Arc<[u8]>>>,
    echo_stdout: bool,
    closed: bool,
}

/// Console output hub. Cheap to clone (shared).
#[derive(Clone)]
pub struct Console {
    inner: Arc<Mutex<Inner>>,
}

/// An attached reader: the scroll-back at attach time, then live output.
pub struct ConsoleReader {
    /// Bytes written before the reader attached (empty if no replay was asked for).
    pub replay: Vec<u8>,
    /// Live output; disconnects when the VM stops or the reader stalls.
    pub live: Receiver<Arc<[u8]>>,
}

impl Console {
    /// A console keeping `scrollback` bytes; `echo_stdout` also copies output to stdout.
    pub fn new(scrollback: usize, echo_stdout: bool) -> Self {
        Console {
            inner: Arc::new(Mutex::new(Inner {
                scrollback: VecDeque::with_capacity(scrollback),
                capacity: scrollback,
                readers: Vec::new(),
                echo_stdout,
                closed: false,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain bytes behind: keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Guest output.
    pub fn write_output(&self, bytes: &[u8]) {
        let mut inner = self.lock();
        if inner.echo_stdout {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(bytes).and_then(|()| out.flush());
        }
        let overflow = (inner.scrollback.len() + bytes.len()).saturating_sub(inner.capacity);
        let drop_old = overflow.min(inner.scrollback.len());
        inner.scrollback.drain(..drop_old);
        let keep_from = bytes.len().saturating_sub(inner.capacity);
        inner.scrollback.extend(&bytes[keep_from..]);
        if inner.readers.is_empty() {
            return;
        }
        let chunk: Arc<[u8]> = Arc::from(bytes);
        inner.readers.retain(|r| match r.try_send(chunk.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        });
    }

    /// Attach a reader; with `replay` it first gets the scroll-back.
    pub fn attach(&self, replay: bool) -> ConsoleReader {
        let (tx, rx) = sync_channel(READER_QUEUE);
        let mut inner = self.lock();
        let replay = if replay {
            inner.scrollback.iter().copied().collect()
        } else {
            Vec::new()
        };
        if !inner.closed {
            inner.readers.push(tx);
        }
        ConsoleReader { replay, live: rx }
    }

    /// Number of attached readers.
    pub fn readers(&self) -> usize {
        self.lock().readers.len()
    }

    /// The VM has stopped: disconnect every reader.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.readers.clear();
    }

    /// A `Write` adapter for the serial device.
    pub fn writer(&self) -> ConsoleWriter {
        ConsoleWriter {
            console: self.clone(),
        }
    }
}

/// `Write` into the console (what the 16550 transmits).
pub struct ConsoleWriter {
    console: Console,
}

impl Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.console.write_output(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrollback_keeps_the_newest_bytes() {
        let c = Console::new(8, false);
        c.write_output(b"hello ");
        c.write_output(b"world");
        assert_eq!(c.attach(true).replay, b"lo world");
        c.write_output(b"0123456789");
        assert_eq!(c.attach(true).replay, b"23456789");
    }

    #[test]
    fn every_reader_gets_live_output() {
        let c = Console::new(64, false);
        let a = c.attach(false);
        let b = c.attach(true);
        c.write_output(b"x");
        assert_eq!(&*a.live.recv().expect("a gets output"), b"x");
        assert_eq!(&*b.live.recv().expect("b gets output"), b"x");
    }

    #[test]
    fn readers_are_disconnected_when_the_console_closes() {
        let c = Console::new(64, false);
        let r = c.attach(false);
        c.close();
        assert!(r.live.recv().is_err());
        assert_eq!(c.readers(), 0);
    }
}

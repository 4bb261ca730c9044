//! The last bytes of a program's output: what error messages quote of a
//! failed command's stderr, and what is kept of a restore's stdout. Local
//! programs (`process`) and commands in containers (`docker`) share it.

/// How much of a failed command's stderr goes into its error.
pub const STDERR: usize = 2 * 1024;
/// What is kept of a command's stdout when berth feeds it an archive:
/// whole listings (`pg_restore --list`, row counts) of any realistic
/// database; only the end of anything larger.
pub const WRITE_STDOUT: usize = 16 << 20;

/// The last `cap` bytes pushed into it. Grows to at most twice `cap`
/// between trims, so a chatty stderr costs a few KiB, not its size.
pub struct Tail {
    buf: Vec<u8>,
    cap: usize,
}

impl Tail {
    pub fn new(cap: usize) -> Tail {
        Tail {
            buf: Vec::new(),
            cap,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if bytes.len() >= self.cap {
            self.buf.clear();
            self.buf.extend_from_slice(&bytes[bytes.len() - self.cap..]);
            return;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > 2 * self.cap {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
        }
    }

    /// The kept bytes as trimmed text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        let start = self.buf.len().saturating_sub(self.cap);
        String::from_utf8_lossy(&self.buf[start..])
            .trim()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_bytes() {
        let mut t = Tail::new(4);
        t.push(b"ab");
        t.push(b"cdef");
        t.push(b"g");
        assert_eq!(t.text(), "defg");
        t.push(b"0123456789");
        assert_eq!(t.text(), "6789");
    }
}

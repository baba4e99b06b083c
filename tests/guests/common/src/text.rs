//! Fixed-capacity ASCII text, for strings copied out of loader memory.

/// Up to `N` bytes of printable ASCII. Other bytes are stored as `?` so the console
/// output stays one line per item whatever the loader handed over.
#[derive(Clone, Copy)]
pub struct FixedStr<const N: usize> {
    buf: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> Default for FixedStr<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FixedStr<N> {
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            truncated: false,
        }
    }

    /// Appends one byte; returns false (and marks truncation) when full.
    pub fn push(&mut self, b: u8) -> bool {
        if self.len == N {
            self.truncated = true;
            return false;
        }
        self.buf[self.len] = if (0x20..0x7f).contains(&b) { b } else { b'?' };
        self.len += 1;
        true
    }

    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut s = Self::new();
        for &b in bytes {
            if !s.push(b) {
                break;
            }
        }
        s
    }

    pub fn as_str(&self) -> &str {
        // Only printable ASCII is ever stored, so this cannot fail.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

impl<const N: usize> core::fmt::Display for FixedStr<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> core::fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

//! The first stdout line of a script run, `executor:pgid:<n>`, tells us the remote process group.
//! It is consumed here and never reaches the job log.

const MARKER: &[u8] = b"executor:pgid:";
/// A marker line is never longer than this; anything longer is ordinary output.
const MAX_LINE: usize = MARKER.len() + 24;

/// Splits the marker off the start of the stdout stream.
#[derive(Debug, Default)]
pub(crate) struct PgidMarker {
    buffer: Vec<u8>,
    done: bool,
    pgid: Option<u32>,
}

impl PgidMarker {
    /// Feeds a stdout chunk; returns the bytes to pass on (possibly none yet).
    pub fn feed<'a>(&mut self, data: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        if self.done {
            return data.into();
        }
        self.buffer.extend_from_slice(data);
        if let Some(pos) = self.buffer.iter().position(|&b| b == b'\n') {
            let line = &self.buffer[..pos];
            self.done = true;
            if let Some(pgid) = parse(line) {
                self.pgid = Some(pgid);
                let rest = self.buffer.split_off(pos + 1);
                self.buffer = Vec::new();
                return rest.into();
            }
            return std::mem::take(&mut self.buffer).into();
        }
        let could_be_marker = self.buffer.len() <= MAX_LINE
            && (MARKER.starts_with(&self.buffer) || self.buffer.starts_with(MARKER));
        if could_be_marker {
            return Vec::new().into();
        }
        self.done = true;
        std::mem::take(&mut self.buffer).into()
    }

    /// Whatever is still held back when the stream ends.
    pub fn finish(&mut self) -> Vec<u8> {
        self.done = true;
        std::mem::take(&mut self.buffer)
    }

    pub fn pgid(&self) -> Option<u32> {
        self.pgid
    }
}

fn parse(line: &[u8]) -> Option<u32> {
    let digits = line.strip_prefix(MARKER)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Option<u32>) {
        let mut m = PgidMarker::default();
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&m.feed(c));
        }
        out.extend(m.finish());
        (out, m.pgid())
    }

    #[test]
    fn strips_a_marker_split_across_chunks() {
        assert_eq!(
            run(&[b"execu", b"tor:pgid:4", b"2\nhello", b" world\n"]),
            (b"hello world\n".to_vec(), Some(42))
        );
    }

    #[test]
    fn passes_ordinary_output_through_untouched() {
        assert_eq!(run(&[b"\xff\xfe\n", b"x"]), (b"\xff\xfe\nx".to_vec(), None));
        assert_eq!(
            run(&[b"executor:pgid:notanumber\nrest"]),
            (b"executor:pgid:notanumber\nrest".to_vec(), None)
        );
        assert_eq!(run(&[b"exec"]), (b"exec".to_vec(), None));
    }
}

//! A server-sent events parser (the WHATWG `text/event-stream` format), fed with network chunks as
//! they arrive. Written here rather than taken from a crate because it is the hot loop of every
//! model call: see docs/benchmarks.md for what it saved.

use crate::error::ModelError;

/// One dispatched event: its `event:` name (`message` when none was given) and its `data:` lines
/// joined by newlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line not yet terminated.
    partial: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    /// The last chunk ended in CR, so an LF opening the next one belongs to that line ending.
    skip_lf: bool,
    /// A byte-order mark is allowed only at the very start of the stream.
    started: bool,
}

impl SseParser {
    /// Parses `chunk`, appending every event it completes to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), ModelError> {
        let mut rest = chunk;
        // An empty chunk says nothing about whether the CR was half of a CRLF.
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            if let [b'\n', tail @ ..] = rest {
                rest = tail;
            }
        }
        if !self.started && !rest.is_empty() {
            self.started = true;
            rest = rest.strip_prefix("\u{feff}".as_bytes()).unwrap_or(rest);
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', rest) {
            let (line, after) = rest.split_at(end);
            let crlf = after.starts_with(b"\r\n");
            rest = &after[if crlf { 2 } else { 1 }..];
            if after == b"\r" {
                self.skip_lf = true;
            }
            if self.partial.is_empty() {
                self.line(line, out)?;
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.line(&whole, out)?;
            }
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), ModelError> {
        if line.is_empty() {
            if self.has_data {
                let event = if self.event.is_empty() { "message".to_owned() } else { std::mem::take(&mut self.event) };
                out.push(SseEvent { event, data: std::mem::take(&mut self.data) });
            }
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            return Ok(());
        }
        let line =
            std::str::from_utf8(line).map_err(|e| ModelError::Protocol(format!("the stream is not UTF-8: {e}")))?;
        let (field, value) = match line.split_once(':') {
            Some(("", _)) => return Ok(()), // a comment
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // `id` and `retry` matter to reconnecting browsers, not to a request that is retried whole.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parse(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, ModelError> {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out)?;
        }
        Ok(out)
    }

    fn event(event: &str, data: &str) -> SseEvent {
        SseEvent { event: event.into(), data: data.into() }
    }

    #[test]
    fn follows_the_event_stream_format() {
        let text = "\u{feff}: comment\nevent: ping\ndata: {}\n\ndata:no space\ndata:  two spaces\n\nid: 7\nretry: 10\n\ndata\n\nevent: x\r\ndata: crlf\r\n\r\nevent: y\rdata: cr\r\r";
        assert_eq!(
            parse(&[text.as_bytes()]).unwrap(),
            [
                event("ping", "{}"),
                event("message", "no space\n two spaces"),
                event("message", ""),
                event("x", "crlf"),
                event("y", "cr")
            ]
        );
    }

    #[test]
    fn a_crlf_split_by_empty_chunks_is_one_line_ending() {
        let chunks: [&[u8]; 4] = [b"data: a\r", b"", b"\ndata: b\r", b"\n\r\n"];
        assert_eq!(parse(&chunks).unwrap(), [event("message", "a\nb")]);
    }

    #[test]
    fn an_unterminated_event_is_not_dispatched() {
        assert_eq!(parse(&[b"data: half\n"]).unwrap(), []);
        assert_eq!(parse(&[b"data: half"]).unwrap(), []);
    }

    #[test]
    fn invalid_utf8_is_a_protocol_error() {
        assert!(matches!(parse(&[b"data: \xff\xfe\n\n"]), Err(ModelError::Protocol(_))));
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(
            events in proptest::collection::vec(("[a-z._]{0,12}", "[ -~λ€\n]{0,40}"), 0..8),
            ending in prop::sample::select(vec!["\n", "\r\n", "\r"]),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let mut text = String::new();
            for (name, data) in &events {
                if !name.is_empty() {
                    text.push_str(&format!("event: {name}{ending}"));
                }
                for line in data.split('\n') {
                    text.push_str(&format!("data: {line}{ending}"));
                }
                text.push_str(ending);
            }
            let bytes = text.as_bytes();
            let whole = parse(&[bytes]).unwrap();
            let expected: Vec<SseEvent> = events
                .iter()
                .map(|(name, data)| event(if name.is_empty() { "message" } else { name }, data))
                .collect();
            prop_assert_eq!(&whole, &expected);

            let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for point in points.into_iter().chain([bytes.len()]) {
                chunks.push(&bytes[start..point]);
                start = point;
            }
            prop_assert_eq!(parse(&chunks).unwrap(), whole);
        }

        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let _ = parse(&slices);
        }
    }
}

//! Server-Sent Events, parsed as the WHATWG rules say (the parts a feed
//! client needs): `event`, `id` and `data` fields (several `data` lines
//! joined by `\n`), comments, a blank line dispatching the event, CRLF, LF
//! or CR line endings (also split across reads), and one BOM at the start.
//!
//! Bytes arrive in whatever pieces the network cuts them into; the parser
//! keeps at most one event's worth of them. An event bigger than the bound
//! is not something tokengate sends: the stream is broken, and the caller
//! reconnects (resuming from the last id it saw).

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    /// `message` when the stream named none.
    pub(crate) kind: String,
    pub(crate) data: String,
}

/// The stream sent an event (or a line) over the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an event of more than {0} bytes")]
pub(crate) struct Oversize(pub(crate) usize);

/// Turns the bytes of one stream into events. One parser per connection.
#[derive(Debug)]
pub(crate) struct Parser {
    max_event: usize,
    /// The current line, not yet ended.
    line: Vec<u8>,
    /// The last byte was a CR: an LF right after it ends nothing more.
    after_cr: bool,
    /// Still at the very start: a BOM here is skipped.
    at_start: bool,
    /// Bytes of the event being read (its lines so far).
    event_bytes: usize,
    kind: String,
    data: String,
    /// The `id` field's value, kept across events (WHATWG's "last event ID
    /// buffer").
    id_buffer: String,
    /// The id as of the last dispatch: what to resume from.
    last_event_id: String,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl Parser {
    #[cfg(test)]
    pub(crate) fn new(max_event: usize) -> Self {
        Self::resuming(max_event, "")
    }

    /// A parser for a stream reopened after `last_event_id` (WHATWG keeps
    /// it across reconnections: an event without an `id` does not lose it).
    pub(crate) fn resuming(max_event: usize, last_event_id: &str) -> Self {
        Self {
            max_event,
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            event_bytes: 0,
            kind: String::new(),
            data: String::new(),
            id_buffer: last_event_id.to_owned(),
            last_event_id: last_event_id.to_owned(),
        }
    }

    /// The id to send as `Last-Event-ID` on reconnecting (empty: none yet).
    pub(crate) fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Parses `bytes`, handing each completed event to `on_event`.
    pub(crate) fn feed(
        &mut self,
        mut bytes: &[u8],
        on_event: &mut impl FnMut(Event),
    ) -> Result<(), Oversize> {
        if self.at_start {
            // `line` holds the part of a BOM seen so far (it may arrive in
            // pieces too); anything else ends the start.
            let have = self.line.len();
            let take = bytes.len().min(BOM.len() - have);
            if bytes[..take] == BOM[have..have + take] {
                self.line.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.line.len() < BOM.len() {
                    return Ok(());
                }
                self.line.clear();
            }
            // Not a BOM: what was held back stays, as text of the line.
            self.at_start = false;
        }
        for &byte in bytes {
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\r' | b'\n' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.end_line(&line, on_event);
                    self.line = line;
                    self.line.clear();
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(byte);
                    if self.event_bytes + self.line.len() > self.max_event {
                        return Err(Oversize(self.max_event));
                    }
                }
            }
        }
        Ok(())
    }

    fn end_line(&mut self, line: &[u8], on_event: &mut impl FnMut(Event)) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        self.event_bytes += line.len() + 1;
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        // Invalid UTF-8 is replaced, as a browser decodes the stream.
        let value = String::from_utf8_lossy(value);
        match field {
            b"event" => self.kind = value.into_owned(),
            b"data" => {
                self.data.push_str(&value);
                self.data.push('\n');
            }
            b"id" if !value.contains('\0') => self.id_buffer = value.into_owned(),
            // `retry` and unknown fields: the backoff is ours to choose.
            _ => {}
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(Event)) {
        self.event_bytes = 0;
        self.last_event_id.clone_from(&self.id_buffer);
        let kind = std::mem::take(&mut self.kind);
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        on_event(Event {
            kind: if kind.is_empty() {
                "message".to_owned()
            } else {
                kind
            },
            data,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(stream: &[u8], piece: usize) -> (Vec<Event>, String) {
        let mut parser = Parser::new(64 * 1024);
        let mut events = Vec::new();
        for chunk in stream.chunks(piece.max(1)) {
            parser.feed(chunk, &mut |e| events.push(e)).unwrap();
        }
        (events, parser.last_event_id().to_owned())
    }

    fn event(kind: &str, data: &str) -> Event {
        Event {
            kind: kind.to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn fields_comments_and_dispatch_whatever_the_line_endings_and_pieces() {
        let lf = "\u{feff}: hello\nevent: session_ended\nid: 1-0\ndata: {\"a\":\ndata:1}\n\n: keepalive\n\nevent: live\ndata: {}\n\n";
        let expected = vec![event("session_ended", "{\"a\":\n1}"), event("live", "{}")];
        for ending in ["\n", "\r\n", "\r"] {
            let stream = lf.replace('\n', ending);
            for piece in [1, 2, 3, 7, stream.len()] {
                let (events, id) = parse_in_pieces(stream.as_bytes(), piece);
                assert_eq!(events, expected, "{ending:?} in pieces of {piece}");
                assert_eq!(id, "1-0", "the id outlives its event");
            }
        }
    }

    #[test]
    fn what_the_rules_say_about_odd_lines() {
        let stream =
            b"data\n\ndata:no space\nid\n\nevent:x\n\ndata:  two\nretry: 5\nfoo: bar\nid: a\0b\n\n";
        let (events, id) = parse_in_pieces(stream, 100);
        assert_eq!(
            events,
            vec![
                event("message", ""),
                event("message", "no space"),
                event("message", " two"),
            ],
            "an event without data is not dispatched; one space is stripped"
        );
        assert_eq!(id, "", "`id` alone empties it; an id with NUL is ignored");
    }

    #[test]
    fn an_event_is_only_dispatched_by_a_blank_line() {
        let (events, id) = parse_in_pieces(b"id: 7\ndata: half", 3);
        assert!(events.is_empty());
        assert_eq!(id, "", "not dispatched: nothing to resume from yet");
    }

    #[test]
    fn an_event_over_the_bound_is_refused_even_without_a_line_end() {
        let mut parser = Parser::new(100);
        let mut count = 0;
        let ok = format!("data: {}\n\n", "x".repeat(80));
        parser.feed(ok.as_bytes(), &mut |_| count += 1).unwrap();
        assert_eq!(count, 1, "the bound is per event");
        let long_line = "x".repeat(101);
        assert_eq!(
            parser.feed(long_line.as_bytes(), &mut |_| count += 1),
            Err(Oversize(100))
        );
        let mut parser = Parser::new(100);
        let many_lines = "data: x\n".repeat(20);
        assert!(parser.feed(many_lines.as_bytes(), &mut |_| ()).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for round in 0..2000 {
            let len = (round % 300) + 1;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // Mostly the bytes that mean something to the parser.
                    b"\r\n:dataeventid \xEF\xBB\xBF\xFF\0x"[(seed % 21) as usize]
                })
                .collect();
            let mut parser = Parser::new(64);
            for chunk in bytes.chunks((round % 5) + 1) {
                // A replaced byte is 3 bytes of UTF-8: never more.
                let mut check = |e: Event| assert!(e.data.len() <= 3 * 64, "{e:?}");
                if parser.feed(chunk, &mut check).is_err() {
                    break;
                }
            }
        }
    }
}

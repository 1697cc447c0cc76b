//! A resumable walker over a server's token stream [MS-TDS 2.2.7], fed the
//! payloads of a response's packets in order. Tokens, values and length
//! prefixes may be split anywhere between packets.
//!
//! Memory stays bounded: values are stepped over by counting, never copied.
//! Only a structural unit (a token header, COLMETADATA, an ENVCHANGE or
//! message body, a value's length prefix, a RETURNVALUE with an integer
//! value) is buffered when a packet boundary splits it, and a unit larger
//! than the limit is an error.
//!
//! Not supported, and reported as errors rather than misread: Always
//! Encrypted columns (CekTable and CryptoMetaData appear only when column
//! encryption was negotiated), DATACLASSIFICATION (only when negotiated) and
//! the COMPUTE tokens ALTMETADATA/ALTROW (gone since SQL Server 2012). The
//! proxy must not let a client negotiate the first two.

use super::col_metadata::read_col_metadata;
use super::return_value::{read_integer_value, read_return_value_header};
use super::row_digest::{RowDigest, RowsDigest};
use super::type_info::{ValueFraming, PLP_NULL, PLP_UNKNOWN_LEN};
use super::{Done, DoneKind, EnvChange, FeatureExtAck, LoginAck, ServerMessage, TokenType};
use crate::tds::error::DecodeError;
use crate::tds::read::Reader;

/// Largest structural unit buffered across packets: 1 MiB.
pub const DEFAULT_MAX_BUFFERED: usize = 1 << 20;
/// A split-unit buffer that grew past this is released once the unit is done.
const KEEP_BUFFER_CAPACITY: usize = 64 * 1024;

/// What the walker reports; rows and values are stepped over silently, all
/// but the integer value of a RETURNVALUE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenEvent {
    EnvChange(EnvChange),
    Error(ServerMessage),
    Info(ServerMessage),
    Done(Done),
    LoginAck(LoginAck),
    FeatureExtAck(FeatureExtAck),
    ReturnStatus(i32),
    /// A COLMETADATA token; `columns` is the count now in effect (the
    /// previous one for NoMetaData).
    ColMetadata {
        columns: usize,
    },
    /// A RETURNVALUE token [2.2.7.19]: an output parameter, such as the
    /// `@handle` of sp_prepare / sp_prepexec (ordinal 0), or a UDF's result.
    /// `value` holds an INT1/INT2/INT4/INT8/INTN value and is None for NULL
    /// and for every other type, whose value is stepped over unread.
    ReturnValue {
        ordinal: u16,
        /// ParamName as sent, e.g. `@handle`; empty for an unnamed parameter.
        name: String,
        value: Option<i64>,
    },
}

/// Where an integer RETURNVALUE's value bytes sit in the response stream,
/// so that a proxy can rewrite a prepared handle in place (same width).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueSpan {
    pub ordinal: u16,
    /// Offset of the value's first byte, counted in payload bytes fed since
    /// the walker was made or reset.
    pub at: u64,
    pub width: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Next: a token type and the token's header.
    Token,
    /// Next: the length prefix (or TEXTPTR, or PLP length) of a value.
    Value(ValueFraming),
    /// Next: a PLP chunk length.
    PlpChunk,
    /// Step over this many bytes, then continue as told.
    Skip(u64, AfterSkip),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterSkip {
    Token,
    ValueEnd,
    PlpChunk,
}

/// Whose value is being walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Row,
    ReturnValue,
}

/// Walks a response token stream; see the module documentation.
#[derive(Debug)]
pub struct TokenWalker {
    state: State,
    owner: Owner,
    /// Framing of each column of the metadata in effect.
    columns: Vec<ValueFraming>,
    /// The same columns as the fast path steps over a ROW; empty when one
    /// of them is a TEXTPTR or PLP value (see [`RowStep`]).
    row_steps: Vec<RowStep>,
    has_metadata: bool,
    /// Next column of the current row to look at.
    next_col: usize,
    /// NBCROW null bitmap; empty for ROW.
    null_bitmap: Vec<u8>,
    /// Bytes still announced by a PLP value of known length.
    plp_left: Option<u64>,
    /// A structural unit split across feeds, and how many more bytes it
    /// needs at least.
    pending: Vec<u8>,
    pending_need: usize,
    max_buffered: usize,
    failed: Option<DecodeError>,
    /// Payload bytes fed before the current chunk.
    fed: u64,
    /// Stream offset of the unit being parsed, and of `pending`'s first byte.
    unit_start: u64,
    pending_start: u64,
    spans: Vec<ValueSpan>,
    /// Row count and checksum, when asked for ([`TokenWalker::digest_rows`]).
    digest: Option<RowDigest>,
}

impl Default for TokenWalker {
    fn default() -> Self {
        TokenWalker::new()
    }
}

impl TokenWalker {
    pub fn new() -> TokenWalker {
        TokenWalker::with_max_buffered(DEFAULT_MAX_BUFFERED)
    }

    /// A walker that buffers at most `max_buffered` bytes of one unit.
    pub fn with_max_buffered(max_buffered: usize) -> TokenWalker {
        TokenWalker {
            state: State::Token,
            owner: Owner::Row,
            columns: Vec::new(),
            row_steps: Vec::new(),
            has_metadata: false,
            next_col: 0,
            null_bitmap: Vec::new(),
            plp_left: None,
            pending: Vec::new(),
            pending_need: 0,
            max_buffered,
            failed: None,
            fed: 0,
            unit_start: 0,
            pending_start: 0,
            spans: Vec::new(),
            digest: None,
        }
    }

    /// From now on, also counts the rows and sums their hashes (see
    /// [`RowDigest`]); read the result with [`rows_digest`](Self::rows_digest).
    pub fn digest_rows(&mut self) {
        self.digest.get_or_insert_with(RowDigest::default);
    }

    /// The rows walked to their end so far, if digesting.
    pub fn rows_digest(&self) -> Option<RowsDigest> {
        self.digest.as_ref().map(RowDigest::digest)
    }

    /// Walks the next bytes of the response, appending what it finds to
    /// `events`. After an error the walker stays failed until [`reset`].
    ///
    /// [`reset`]: TokenWalker::reset
    pub fn feed(&mut self, chunk: &[u8], events: &mut Vec<TokenEvent>) -> Result<(), DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.walk(chunk, self.fed, events);
        self.fed += chunk.len() as u64;
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// Where the integer RETURNVALUE values found since the last call sit in
    /// the stream (see [`ValueSpan`]).
    pub fn take_value_spans(&mut self) -> Vec<ValueSpan> {
        std::mem::take(&mut self.spans)
    }

    /// True between tokens: everything fed so far forms whole tokens.
    pub fn at_token_boundary(&self) -> bool {
        self.state == State::Token && self.pending.is_empty() && self.failed.is_none()
    }

    /// Forgets a partly walked token and any error, as at the start of a new
    /// response. The last COLMETADATA is kept: a later response may send
    /// NoMetaData and reuse it [2.2.7.4].
    pub fn reset(&mut self) {
        self.state = State::Token;
        self.owner = Owner::Row;
        self.next_col = 0;
        self.null_bitmap.clear();
        self.plp_left = None;
        self.clear_pending();
        self.failed = None;
        self.fed = 0;
        self.spans.clear();
        if let Some(digest) = self.digest.as_mut() {
            digest.abandon_row();
        }
    }

    /// Walks `input`, whose first byte is at stream offset `base`.
    fn walk(
        &mut self,
        input: &[u8],
        base: u64,
        events: &mut Vec<TokenEvent>,
    ) -> Result<(), DecodeError> {
        let mut pos = 0;
        while pos < input.len() {
            pos = match self.state {
                State::Skip(n, after) => pos + self.skip(n, after, &input[pos..]),
                State::Token if self.pending.is_empty() => {
                    match self.rows_in_place(&input[pos..]) {
                        (0, 0) => self.unit_in_place(input, base, pos, events)?,
                        (len, 0) => pos + len,
                        (_, left) => {
                            self.state = State::Skip(left, AfterSkip::Token);
                            input.len()
                        }
                    }
                }
                _ if self.pending.is_empty() => self.unit_in_place(input, base, pos, events)?,
                _ => self.unit_resumed(input, pos, events)?,
            };
        }
        Ok(())
    }

    /// How many bytes at the start of `input` are rows (ROW or NBCROW)
    /// whose values all have a plain length prefix (or none): the rows of
    /// most results, stepped over in one tight pass where the state machine
    /// takes a unit or two per value. The second figure is what is still to
    /// come of the last row when the input ends inside its values but after
    /// every length prefix, as a large value cut by a packet boundary
    /// usually is: those bytes are then merely skipped, with no state
    /// machine. It stops at anything else, a length prefix cut by the end
    /// of the input, or a TEXTPTR or PLP value, and leaves that to the
    /// state machine; so it does with every row when there is no
    /// COLMETADATA yet (its error to report) or a digest to feed value by
    /// value. Rows leave the walker between tokens, as they found it:
    /// nothing else changes.
    fn rows_in_place(&self, input: &[u8]) -> (usize, u64) {
        if self.digest.is_some() || !self.has_metadata {
            return (0, 0);
        }
        let mut at = 0;
        while let Some(end) = self.row_end(input, at) {
            if end > input.len() {
                return (input.len(), (end - input.len()) as u64);
            }
            at = end;
        }
        (at, 0)
    }

    /// Where the row that starts at `input[at]` ends (see
    /// [`TokenWalker::rows_in_place`]), which may be past the input's end;
    /// positions in `input` throughout, as a result may hold thousands of
    /// rows a feed.
    fn row_end(&self, input: &[u8], at: usize) -> Option<usize> {
        match TokenType(*input.get(at)?) {
            TokenType::ROW if !self.row_steps.is_empty() => {
                RowStep::walk(&self.row_steps, input, at + 1)
            }
            TokenType::NBCROW => {
                let values = at + 1 + self.columns.len().div_ceil(8);
                let bitmap = input.get(at + 1..values)?;
                let mut pos = values;
                for (col, framing) in self.columns.iter().enumerate() {
                    if bitmap[col / 8] >> (col % 8) & 1 == 0 {
                        pos = RowStep::of(*framing)?.end(input, pos)?;
                    }
                }
                Some(pos)
            }
            _ => None,
        }
    }

    /// Steps over what it can of the `n` bytes still to skip; a row's value
    /// bytes go to the digest on the way.
    fn skip(&mut self, n: u64, after: AfterSkip, avail: &[u8]) -> usize {
        let k = n.min(avail.len() as u64);
        if self.owner == Owner::Row && after != AfterSkip::Token {
            if let Some(digest) = self.digest.as_mut() {
                digest.data(&avail[..k as usize]);
            }
        }
        self.state = if k == n {
            self.after_skip(after)
        } else {
            State::Skip(n - k, after)
        };
        k as usize
    }

    fn after_skip(&mut self, after: AfterSkip) -> State {
        match after {
            AfterSkip::Token => State::Token,
            AfterSkip::ValueEnd => self.value_end(),
            AfterSkip::PlpChunk => State::PlpChunk,
        }
    }

    /// Parses the next unit straight from the input; if the input ends inside
    /// it, keeps the rest of the input for the next feed.
    fn unit_in_place(
        &mut self,
        input: &[u8],
        base: u64,
        pos: usize,
        events: &mut Vec<TokenEvent>,
    ) -> Result<usize, DecodeError> {
        self.unit_start = base + pos as u64;
        match self.unit(&input[pos..], events) {
            Ok(k) => Ok(pos + k),
            Err(DecodeError::Truncated { needed, .. }) => {
                let rest = &input[pos..];
                self.check_room(rest.len().saturating_add(needed))?;
                self.pending.extend_from_slice(rest);
                self.pending_need = needed;
                self.pending_start = self.unit_start;
                Ok(input.len())
            }
            Err(e) => Err(e),
        }
    }

    /// Completes a unit begun in an earlier feed. It first appends just the
    /// bytes known to be missing; if the unit turns out longer (COLMETADATA),
    /// it appends all it can, so a large unit is re-parsed a few times per
    /// feed rather than once per field.
    fn unit_resumed(
        &mut self,
        input: &[u8],
        mut pos: usize,
        events: &mut Vec<TokenEvent>,
    ) -> Result<usize, DecodeError> {
        let start = pos;
        let mut greedy = false;
        loop {
            let avail = input.len() - pos;
            let room = self.max_buffered.saturating_sub(self.pending.len());
            let n = if greedy {
                avail.min(room)
            } else {
                avail.min(self.pending_need)
            };
            self.pending.extend_from_slice(&input[pos..pos + n]);
            pos += n;
            if n < self.pending_need {
                self.pending_need -= n;
                return Ok(pos);
            }
            let buf = std::mem::take(&mut self.pending);
            self.unit_start = self.pending_start;
            match self.unit(&buf, events) {
                Ok(k) => return self.finish_resumed(buf, k, start, pos, events),
                Err(DecodeError::Truncated { needed, .. }) => {
                    self.pending = buf;
                    self.check_room(self.pending.len().saturating_add(needed))?;
                    self.pending_need = needed;
                    greedy = true;
                }
                Err(e) => {
                    self.pending = buf;
                    return Err(e);
                }
            }
        }
    }

    /// After a buffered unit of `k` bytes is done, walking resumes right
    /// after it: in the input if the rest came from this feed (always, as a
    /// unit that failed on earlier bytes ends in later ones), else by first
    /// walking the buffered tail.
    fn finish_resumed(
        &mut self,
        mut buf: Vec<u8>,
        k: usize,
        start: usize,
        pos: usize,
        events: &mut Vec<TokenEvent>,
    ) -> Result<usize, DecodeError> {
        let leftover = buf.len() - k;
        let appended = pos - start;
        let older_tail = (leftover > appended).then(|| buf[k..buf.len() - appended].to_vec());
        let tail_base = self.pending_start + k as u64;
        buf.clear();
        self.pending = buf;
        self.clear_pending();
        match older_tail {
            None => Ok(pos - leftover),
            Some(tail) => {
                self.walk(&tail, tail_base, events)?;
                Ok(start)
            }
        }
    }

    fn clear_pending(&mut self) {
        self.pending.clear();
        self.pending_need = 0;
        if self.pending.capacity() > KEEP_BUFFER_CAPACITY {
            self.pending = Vec::new();
        }
    }

    fn check_room(&self, total: usize) -> Result<(), DecodeError> {
        if total > self.max_buffered {
            return Err(DecodeError::invalid(
                "token stream",
                format!(
                    "a token header or metadata of at least {total} bytes exceeds the {}-byte buffering limit",
                    self.max_buffered
                ),
            ));
        }
        Ok(())
    }

    /// Parses one structural unit at the start of `bytes` and returns its
    /// length. On `Truncated` nothing has changed, so it can be retried with
    /// more bytes.
    fn unit(&mut self, bytes: &[u8], events: &mut Vec<TokenEvent>) -> Result<usize, DecodeError> {
        let mut r = Reader::new(bytes, "token stream");
        match self.state {
            State::Token => self.token(&mut r, events)?,
            State::Value(framing) => self.value_header(framing, &mut r)?,
            State::PlpChunk => self.plp_chunk(&mut r)?,
            State::Skip(..) => {
                return Err(DecodeError::invalid(
                    "token stream",
                    "internal: unit while skipping",
                ))
            }
        }
        Ok(r.position())
    }

    fn token(
        &mut self,
        r: &mut Reader<'_>,
        events: &mut Vec<TokenEvent>,
    ) -> Result<(), DecodeError> {
        let ty = TokenType(r.u8()?);
        match ty {
            TokenType::ROW => self.start_row(&[]),
            TokenType::NBCROW => {
                let bitmap = r.take(self.columns.len().div_ceil(8))?;
                self.start_row(bitmap)
            }
            TokenType::COLMETADATA => self.col_metadata(r, events),
            TokenType::RETURNVALUE => self.return_value(r, events),
            _ if is_skipped_token(ty) => {
                self.state = skipped_token(ty, r)?;
                Ok(())
            }
            _ => report_token(ty, r, events),
        }
    }

    fn col_metadata(
        &mut self,
        r: &mut Reader<'_>,
        events: &mut Vec<TokenEvent>,
    ) -> Result<(), DecodeError> {
        if let Some(columns) = read_col_metadata(r)? {
            self.row_steps = RowStep::plan(&columns);
            self.columns = columns;
            self.has_metadata = true;
        }
        events.push(TokenEvent::ColMetadata {
            columns: self.columns.len(),
        });
        Ok(())
    }

    /// An integer value (at most 9 bytes) is read with the header, as one
    /// unit; any other value is stepped over like a column value.
    fn return_value(
        &mut self,
        r: &mut Reader<'_>,
        events: &mut Vec<TokenEvent>,
    ) -> Result<(), DecodeError> {
        let header = read_return_value_header(r)?;
        let value = if header.data_type.is_integer() {
            let before = r.position();
            let value = read_integer_value(r, header.framing)?;
            if value.is_some() {
                // The value is the last bytes read; a BYTELEN prefix precedes it.
                let width =
                    r.position() - before - usize::from(header.framing == ValueFraming::ByteLen);
                self.spans.push(ValueSpan {
                    ordinal: header.ordinal,
                    at: self.unit_start + (r.position() - width) as u64,
                    width: width as u8,
                });
            }
            value
        } else {
            self.owner = Owner::ReturnValue;
            self.state = self.start_value(header.framing);
            None
        };
        events.push(TokenEvent::ReturnValue {
            ordinal: header.ordinal,
            name: header.name,
            value,
        });
        Ok(())
    }

    fn start_row(&mut self, null_bitmap: &[u8]) -> Result<(), DecodeError> {
        if !self.has_metadata {
            return Err(DecodeError::invalid("ROW", "row before any COLMETADATA"));
        }
        self.null_bitmap.clear();
        self.null_bitmap.extend_from_slice(null_bitmap);
        self.owner = Owner::Row;
        self.next_col = 0;
        if let Some(digest) = self.digest.as_mut() {
            digest.start_row();
        }
        self.state = self.next_column();
        Ok(())
    }

    /// The state for the rest of the row from `next_col`: NULL columns of an
    /// NBCROW have no bytes, and adjacent fixed-length values are skipped as
    /// one run. A NULL ends a run, so that the digest sees values in column
    /// order whether the row is a ROW or an NBCROW.
    fn next_column(&mut self) -> State {
        let mut fixed = 0u64;
        while let Some(&framing) = self.columns.get(self.next_col) {
            if self.is_null(self.next_col) {
                if fixed > 0 {
                    return State::Skip(fixed, AfterSkip::ValueEnd);
                }
                if let Some(digest) = self.digest.as_mut() {
                    digest.null_value();
                }
            } else {
                match framing {
                    ValueFraming::Fixed(n) => fixed += u64::from(n),
                    _ if fixed > 0 => return State::Skip(fixed, AfterSkip::ValueEnd),
                    other => {
                        self.next_col += 1;
                        return State::Value(other);
                    }
                }
            }
            self.next_col += 1;
        }
        if fixed == 0 {
            if let Some(digest) = self.digest.as_mut() {
                digest.end_row();
            }
        }
        skip_then(fixed, AfterSkip::ValueEnd, State::Token)
    }

    fn is_null(&self, col: usize) -> bool {
        self.null_bitmap
            .get(col / 8)
            .is_some_and(|byte| byte >> (col % 8) & 1 == 1)
    }

    fn start_value(&mut self, framing: ValueFraming) -> State {
        match framing {
            ValueFraming::Fixed(n) => self.skip_value(u64::from(n)),
            other => State::Value(other),
        }
    }

    /// The value being walked is NULL: nothing follows its header.
    fn null_value(&mut self) -> State {
        if self.owner == Owner::Row {
            if let Some(digest) = self.digest.as_mut() {
                digest.mark_null();
            }
        }
        self.value_end()
    }

    fn skip_value(&mut self, n: u64) -> State {
        if n == 0 {
            self.value_end()
        } else {
            State::Skip(n, AfterSkip::ValueEnd)
        }
    }

    fn value_end(&mut self) -> State {
        match self.owner {
            Owner::Row => {
                if let Some(digest) = self.digest.as_mut() {
                    digest.end_value();
                }
                self.next_column()
            }
            Owner::ReturnValue => State::Token,
        }
    }

    /// Reads a value's length prefix [2.2.5.2.3] and steps into its data.
    fn value_header(
        &mut self,
        framing: ValueFraming,
        r: &mut Reader<'_>,
    ) -> Result<(), DecodeError> {
        self.state = match framing {
            ValueFraming::Fixed(n) => self.skip_value(u64::from(n)),
            // A BYTELEN type's NULL is length 0 [2.2.5.2.3].
            ValueFraming::ByteLen => match r.u8()? {
                0 => self.null_value(),
                n => self.skip_value(u64::from(n)),
            },
            ValueFraming::UShortLen => match r.u16_le()? {
                0xFFFF => self.null_value(),
                n => self.skip_value(u64::from(n)),
            },
            ValueFraming::TextPtr => match text_len(r)? {
                None => self.null_value(),
                Some(n) => self.skip_value(n),
            },
            // A sql_variant's NULL is length 0 [2.2.5.5.4].
            ValueFraming::Variant => match r.u32_le()? {
                0 | u32::MAX => self.null_value(),
                n => self.skip_value(u64::from(n)),
            },
            // LongLen framing only comes from RPC parameters.
            ValueFraming::LongLen => match r.u32_le()? {
                u32::MAX => self.null_value(),
                n => self.skip_value(u64::from(n)),
            },
            ValueFraming::Plp => match r.u64_le()? {
                PLP_NULL => self.null_value(),
                total => {
                    self.plp_left = (total != PLP_UNKNOWN_LEN).then_some(total);
                    State::PlpChunk
                }
            },
        };
        Ok(())
    }

    /// PLP_CHUNK: a ULONG length and data; length 0 is PLP_TERMINATOR. With a
    /// known total, the chunks must add up to it, which catches a desync.
    fn plp_chunk(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        let n = u64::from(r.u32_le()?);
        let left = match (n, self.plp_left) {
            (0, Some(left)) if left != 0 => {
                return Err(plp_mismatch(format!(
                    "ended {left} byte(s) short of its length"
                )))
            }
            (0, _) => {
                self.state = self.value_end();
                return Ok(());
            }
            (n, Some(left)) if n > left => {
                return Err(plp_mismatch(format!("chunk of {n} bytes with {left} left")))
            }
            (n, left) => left.map(|l| l - n),
        };
        self.plp_left = left;
        self.state = State::Skip(n, AfterSkip::PlpChunk);
        Ok(())
    }
}

/// One step of the fast path over a ROW token's values: a run of
/// fixed-length columns is one step, each prefixed value another. Built
/// once per COLMETADATA, so that a row costs a few instructions a value
/// (a 10,000-row result is walked row by row to find the DONE after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowStep {
    /// This many bytes of FIXEDLENTYPE values.
    Fixed(usize),
    /// BYTELEN prefix and data; 0 is NULL.
    ByteLen,
    /// USHORTCHARBINLEN prefix and data; 0xFFFF is NULL.
    UShortLen,
    /// LONGLEN prefix and data (sql_variant too); 0xFFFFFFFF is NULL.
    LongLen,
}

impl RowStep {
    /// How a value of `framing` is stepped over; `None` for a TEXTPTR or
    /// PLP value, which the state machine walks.
    fn of(framing: ValueFraming) -> Option<RowStep> {
        Some(match framing {
            ValueFraming::Fixed(n) => RowStep::Fixed(usize::from(n)),
            ValueFraming::ByteLen => RowStep::ByteLen,
            ValueFraming::UShortLen => RowStep::UShortLen,
            ValueFraming::Variant | ValueFraming::LongLen => RowStep::LongLen,
            ValueFraming::TextPtr | ValueFraming::Plp => return None,
        })
    }

    /// The steps for `columns`; none if one of them is a TEXTPTR or PLP
    /// value.
    fn plan(columns: &[ValueFraming]) -> Vec<RowStep> {
        let mut steps: Vec<RowStep> = Vec::with_capacity(columns.len());
        for &framing in columns {
            match (RowStep::of(framing), steps.last_mut()) {
                (None, _) => return Vec::new(),
                (Some(RowStep::Fixed(n)), Some(RowStep::Fixed(run))) => *run += n,
                (Some(step), _) => steps.push(step),
            }
        }
        steps
    }

    /// Where a ROW token's values that start at `input[pos]` end, by
    /// `steps`; `None` if a length prefix is cut off. The end may lie past
    /// `input`: the rest of the row is then values still to come.
    fn walk(steps: &[RowStep], input: &[u8], mut pos: usize) -> Option<usize> {
        for step in steps {
            pos = step.end(input, pos)?;
        }
        Some(pos)
    }

    /// Where this step's bytes that start at `input[pos]` end (see
    /// [`RowStep::walk`]). A prefix is read only inside `input`, so the
    /// sums that can overflow are those after a LONGLEN length (the only
    /// large one): a LONGLEN value's and fixed bytes, both checked.
    #[inline]
    fn end(self, input: &[u8], pos: usize) -> Option<usize> {
        Some(match self {
            RowStep::Fixed(n) => pos.checked_add(n)?,
            // A BYTELEN type's NULL is length 0 [2.2.5.2.3].
            RowStep::ByteLen => pos + 1 + usize::from(*input.get(pos)?),
            RowStep::UShortLen => {
                let prefix = input.get(pos..pos + 2)?;
                match u16::from_le_bytes([prefix[0], prefix[1]]) {
                    0xFFFF => pos + 2,
                    n => pos + 2 + usize::from(n),
                }
            }
            // A sql_variant's NULL is length 0 or 0xFFFFFFFF, a LONGLEN's
            // 0xFFFFFFFF [2.2.5.5.4].
            RowStep::LongLen => {
                let prefix = input.get(pos..pos + 4)?;
                match u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) {
                    u32::MAX => pos + 4,
                    n => (pos + 4).checked_add(usize::try_from(n).ok()?)?,
                }
            }
        })
    }
}

/// Tokens the walker reports; each is decoded whole. Also used by
/// [`super::row`], which reads whole replies.
pub(super) fn report_token(
    ty: TokenType,
    r: &mut Reader<'_>,
    events: &mut Vec<TokenEvent>,
) -> Result<(), DecodeError> {
    let event = match ty {
        TokenType::DONE | TokenType::DONEPROC | TokenType::DONEINPROC => {
            let kind = DoneKind::from_token_type(ty).unwrap_or(DoneKind::Done);
            TokenEvent::Done(Done::decode(kind, r.take(Done::BODY_LEN)?)?)
        }
        TokenType::RETURNSTATUS => TokenEvent::ReturnStatus(r.u32_le()? as i32),
        TokenType::ENVCHANGE => {
            let declared = r.u16_le()?;
            let body = r.take(EnvChange::body_len(declared, r.rest())?)?;
            let changes = EnvChange::decode_all(body).map_err(in_body)?;
            events.extend(changes.into_iter().map(TokenEvent::EnvChange));
            return Ok(());
        }
        TokenType::ERROR => {
            TokenEvent::Error(ServerMessage::decode(u16_body(r)?).map_err(in_body)?)
        }
        TokenType::INFO => TokenEvent::Info(ServerMessage::decode(u16_body(r)?).map_err(in_body)?),
        TokenType::LOGINACK => {
            TokenEvent::LoginAck(LoginAck::decode(u16_body(r)?).map_err(in_body)?)
        }
        TokenType::FEATUREEXTACK => TokenEvent::FeatureExtAck(FeatureExtAck::read(r)?),
        TokenType::DATACLASSIFICATION | TokenType::ALTMETADATA | TokenType::ALTROW => {
            return Err(DecodeError::invalid(
                "token stream",
                format!("token 0x{:02X} is not supported (never negotiated)", ty.0),
            ))
        }
        other => {
            return Err(DecodeError::invalid(
                "token stream",
                format!("unknown token type 0x{:02X}", other.0),
            ))
        }
    };
    events.push(event);
    Ok(())
}

/// Tokens stepped over by their length: ORDER, COLINFO, TABNAME and SSPI
/// (USHORT), SESSIONSTATE and FEDAUTHINFO (DWORD), OFFSET (two USHORTs).
fn skipped_token(ty: TokenType, r: &mut Reader<'_>) -> Result<State, DecodeError> {
    let n = skipped_token_len(ty, r)?;
    Ok(skip_then(n, AfterSkip::Token, State::Token))
}

/// Reads the length of a token the walker steps over and returns how many
/// bytes of its body follow.
pub(super) fn skipped_token_len(ty: TokenType, r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    Ok(match ty {
        TokenType::SESSIONSTATE | TokenType::FEDAUTHINFO => u64::from(r.u32_le()?),
        TokenType::OFFSET => 4,
        _ => u64::from(r.u16_le()?),
    })
}

/// Tokens stepped over by their length (see [`skipped_token_len`]).
pub(super) fn is_skipped_token(ty: TokenType) -> bool {
    matches!(
        ty,
        TokenType::ORDER
            | TokenType::COLINFO
            | TokenType::TABNAME
            | TokenType::SSPI
            | TokenType::SESSIONSTATE
            | TokenType::FEDAUTHINFO
            | TokenType::OFFSET
    )
}

/// Skip `n` bytes then continue as `after`; with nothing to skip, `now`.
fn skip_then(n: u64, after: AfterSkip, now: State) -> State {
    if n == 0 {
        now
    } else {
        State::Skip(n, after)
    }
}

/// A USHORT-length token body.
fn u16_body<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], DecodeError> {
    let n = r.u16_le()? as usize;
    r.take(n)
}

/// A body is complete once taken: running out inside it means its length
/// was too short, not that more input is needed.
fn in_body(e: DecodeError) -> DecodeError {
    match e {
        DecodeError::Truncated { context, needed } => DecodeError::invalid(
            context,
            format!("contents run {needed} byte(s) past the token length"),
        ),
        other => other,
    }
}

/// TEXT/NTEXT/IMAGE value header: TEXTPTR (empty means NULL), TIMESTAMP,
/// then the data length (0xFFFFFFFF also means NULL). None for NULL.
pub(super) fn text_len(r: &mut Reader<'_>) -> Result<Option<u64>, DecodeError> {
    let ptr_len = r.u8()? as usize;
    if ptr_len == 0 {
        return Ok(None);
    }
    r.skip(ptr_len + 8)?;
    Ok(match r.u32_le()? {
        u32::MAX => None,
        n => Some(u64::from(n)),
    })
}

fn plp_mismatch(detail: String) -> DecodeError {
    DecodeError::invalid("PLP value", detail)
}

#[cfg(test)]
mod tests;

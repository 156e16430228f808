//! FastCGI 1.0 records: parsing and serialisation, with no I/O policy and no panics.
//!
//! A record is an 8-byte header (`version`, `type`, `requestId`, `contentLength`,
//! `paddingLength`, reserved byte) followed by `contentLength` bytes of content and
//! `paddingLength` bytes of padding. Content is at most 65535 bytes, so one record never makes
//! this module allocate more than 64 KiB; streams that span records (PARAMS, STDIN) are bounded
//! by the caller through [`Limits`].
//!
//! Every malformed input yields an [`Error`]; nothing here indexes out of bounds or asserts on
//! input. [`parse_stream`] is the entry point for fuzzing.

use std::io::{self, Read};

/// The only protocol version defined (`FCGI_VERSION_1`).
pub const VERSION_1: u8 = 1;
/// Length of a record header.
pub const HEADER_LEN: usize = 8;
/// Largest content a single record can carry.
pub const MAX_CONTENT_LEN: usize = 65535;
/// Chunk size used when splitting output streams: the largest multiple of 8 that fits in one
/// record, so full chunks need no padding.
pub const STREAM_CHUNK: usize = 65528;

/// `FCGI_BEGIN_REQUEST`.
pub const BEGIN_REQUEST: u8 = 1;
/// `FCGI_ABORT_REQUEST`.
pub const ABORT_REQUEST: u8 = 2;
/// `FCGI_END_REQUEST`.
pub const END_REQUEST: u8 = 3;
/// `FCGI_PARAMS`.
pub const PARAMS: u8 = 4;
/// `FCGI_STDIN`.
pub const STDIN: u8 = 5;
/// `FCGI_STDOUT`.
pub const STDOUT: u8 = 6;
/// `FCGI_STDERR`.
pub const STDERR: u8 = 7;
/// `FCGI_DATA`.
pub const DATA: u8 = 8;
/// `FCGI_GET_VALUES`.
pub const GET_VALUES: u8 = 9;
/// `FCGI_GET_VALUES_RESULT`.
pub const GET_VALUES_RESULT: u8 = 10;
/// `FCGI_UNKNOWN_TYPE`.
pub const UNKNOWN_TYPE: u8 = 11;

/// `FCGI_KEEP_CONN` flag of BEGIN_REQUEST: the application must not close the connection.
pub const KEEP_CONN: u8 = 1;
/// `FCGI_RESPONDER` role, the only one this crate serves.
pub const ROLE_RESPONDER: u16 = 1;
/// `FCGI_AUTHORIZER` role.
pub const ROLE_AUTHORIZER: u16 = 2;
/// `FCGI_FILTER` role.
pub const ROLE_FILTER: u16 = 3;

/// END_REQUEST protocol status: `FCGI_REQUEST_COMPLETE`.
pub const REQUEST_COMPLETE: u8 = 0;
/// END_REQUEST protocol status: `FCGI_CANT_MPX_CONN` (second request on one connection).
pub const CANT_MPX_CONN: u8 = 1;
/// END_REQUEST protocol status: `FCGI_OVERLOADED`.
pub const OVERLOADED: u8 = 2;
/// END_REQUEST protocol status: `FCGI_UNKNOWN_ROLE`.
pub const UNKNOWN_ROLE: u8 = 3;

/// Errors from parsing FastCGI input. Any of them means the peer is not speaking FastCGI 1.0
/// correctly (or the connection failed), and the connection should be closed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The underlying read failed (including read timeouts).
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// The input ended inside a record.
    #[error("input ended inside a record (needed {needed} more bytes)")]
    Truncated {
        /// Bytes still missing when the input ended.
        needed: usize,
    },
    /// The header's version byte is not 1.
    #[error(
        "unsupported FastCGI version {0} (only version 1 exists); is the peer speaking FastCGI?"
    )]
    BadVersion(u8),
    /// A fixed-size record body had the wrong length.
    #[error("record type {record_type} must have {expected} content bytes, got {got}")]
    BadLength {
        /// Record type.
        record_type: u8,
        /// Required content length.
        expected: usize,
        /// Actual content length.
        got: usize,
    },
    /// A name-value pair's lengths point past the end of its data.
    #[error("name-value pair truncated")]
    PairTruncated,
    /// A name-value pair is longer than [`Limits::max_pair_len`].
    #[error("name-value pair of {len} bytes exceeds the limit of {limit}")]
    PairTooLong {
        /// Declared length.
        len: usize,
        /// Configured limit.
        limit: usize,
    },
    /// A stream (PARAMS or STDIN) grew past its configured limit.
    #[error("{what} exceed the limit of {limit} bytes")]
    TooLarge {
        /// Which stream.
        what: &'static str,
        /// Configured limit.
        limit: usize,
    },
    /// Too many name-value pairs.
    #[error("more than {limit} name-value pairs")]
    TooManyPairs {
        /// Configured limit.
        limit: usize,
    },
    /// A management record type (request id 0) was used with a non-zero request id, or an
    /// application record with request id 0.
    #[error("record type {record_type} not allowed with request id {request_id}")]
    BadRequestId {
        /// Record type.
        record_type: u8,
        /// Request id found.
        request_id: u16,
    },
}

/// Bounds on what a peer can make us buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes of one request's PARAMS stream (default 1 MiB).
    pub max_params_bytes: usize,
    /// Longest single name or value (default 1 MiB).
    pub max_pair_len: usize,
    /// Most name-value pairs in one stream (default 4096; Apache sends about 40).
    pub max_pairs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_params_bytes: 1 << 20,
            max_pair_len: 1 << 20,
            max_pairs: 4096,
        }
    }
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Protocol version (always [`VERSION_1`] once parsed).
    pub version: u8,
    /// Record type.
    pub record_type: u8,
    /// Request id; 0 for management records.
    pub request_id: u16,
    /// Content bytes following the header.
    pub content_length: u16,
    /// Padding bytes following the content.
    pub padding_length: u8,
}

/// Decodes a record header; fails on any version other than 1.
pub fn parse_header(bytes: &[u8; HEADER_LEN]) -> Result<Header, Error> {
    if bytes[0] != VERSION_1 {
        return Err(Error::BadVersion(bytes[0]));
    }
    Ok(Header {
        version: bytes[0],
        record_type: bytes[1],
        request_id: u16::from_be_bytes([bytes[2], bytes[3]]),
        content_length: u16::from_be_bytes([bytes[4], bytes[5]]),
        padding_length: bytes[6],
    })
}

/// A name-value pair as raw bytes (FastCGI does not promise UTF-8).
pub type Pair = (Vec<u8>, Vec<u8>);

/// One typed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Starts a request.
    BeginRequest {
        /// Request id.
        request_id: u16,
        /// Role (1 responder, 2 authorizer, 3 filter).
        role: u16,
        /// Flags; bit 0 is [`KEEP_CONN`].
        flags: u8,
    },
    /// The web server gave up on a request.
    AbortRequest {
        /// Request id.
        request_id: u16,
    },
    /// Ends a request (application → web server).
    EndRequest {
        /// Request id.
        request_id: u16,
        /// Application exit status.
        app_status: u32,
        /// One of [`REQUEST_COMPLETE`], [`CANT_MPX_CONN`], [`OVERLOADED`], [`UNKNOWN_ROLE`].
        protocol_status: u8,
    },
    /// A chunk of the PARAMS stream; empty marks its end.
    Params {
        /// Request id.
        request_id: u16,
        /// Raw bytes (pairs may span chunks).
        data: Vec<u8>,
    },
    /// A chunk of the request body; empty marks its end.
    Stdin {
        /// Request id.
        request_id: u16,
        /// Raw bytes.
        data: Vec<u8>,
    },
    /// A chunk of the response; empty marks its end.
    Stdout {
        /// Request id.
        request_id: u16,
        /// Raw bytes.
        data: Vec<u8>,
    },
    /// A chunk of the error stream; empty marks its end.
    Stderr {
        /// Request id.
        request_id: u16,
        /// Raw bytes.
        data: Vec<u8>,
    },
    /// Filter-role file data; empty marks its end.
    Data {
        /// Request id.
        request_id: u16,
        /// Raw bytes.
        data: Vec<u8>,
    },
    /// Management query for variables such as `FCGI_MAX_CONNS` (values are empty).
    GetValues {
        /// Requested names with their (normally empty) values.
        pairs: Vec<Pair>,
    },
    /// Answer to [`Record::GetValues`].
    GetValuesResult {
        /// Known names with their values.
        pairs: Vec<Pair>,
    },
    /// Answer to a management record of a type the application does not know.
    UnknownType {
        /// The type that was not understood.
        record_type: u8,
    },
    /// A record of a type this module does not know.
    Unknown {
        /// Record type.
        record_type: u8,
        /// Request id (0 means a management record, to be answered with UNKNOWN_TYPE).
        request_id: u16,
        /// Content bytes.
        content: Vec<u8>,
    },
}

impl Record {
    /// Request id of the record (0 for management records).
    pub fn request_id(&self) -> u16 {
        match self {
            Record::BeginRequest { request_id, .. }
            | Record::AbortRequest { request_id }
            | Record::EndRequest { request_id, .. }
            | Record::Params { request_id, .. }
            | Record::Stdin { request_id, .. }
            | Record::Stdout { request_id, .. }
            | Record::Stderr { request_id, .. }
            | Record::Data { request_id, .. }
            | Record::Unknown { request_id, .. } => *request_id,
            Record::GetValues { .. }
            | Record::GetValuesResult { .. }
            | Record::UnknownType { .. } => 0,
        }
    }
}

fn fixed8(header: &Header, content: &[u8]) -> Result<[u8; 8], Error> {
    <[u8; 8]>::try_from(content).map_err(|_| Error::BadLength {
        record_type: header.record_type,
        expected: 8,
        got: content.len(),
    })
}

/// Builds a typed record from a header and its content (padding already stripped).
pub fn parse_body(header: &Header, content: &[u8], limits: &Limits) -> Result<Record, Error> {
    let id = header.request_id;
    let management = matches!(
        header.record_type,
        GET_VALUES | GET_VALUES_RESULT | UNKNOWN_TYPE
    );
    let application = (BEGIN_REQUEST..=DATA).contains(&header.record_type);
    if (management && id != 0) || (application && id == 0) {
        return Err(Error::BadRequestId {
            record_type: header.record_type,
            request_id: id,
        });
    }
    let data = || content.to_vec();
    Ok(match header.record_type {
        BEGIN_REQUEST => {
            let b = fixed8(header, content)?;
            Record::BeginRequest {
                request_id: id,
                role: u16::from_be_bytes([b[0], b[1]]),
                flags: b[2],
            }
        }
        // The spec gives ABORT_REQUEST no body; content, if any, is ignored.
        ABORT_REQUEST => Record::AbortRequest { request_id: id },
        END_REQUEST => {
            let b = fixed8(header, content)?;
            Record::EndRequest {
                request_id: id,
                app_status: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                protocol_status: b[4],
            }
        }
        PARAMS => Record::Params {
            request_id: id,
            data: data(),
        },
        STDIN => Record::Stdin {
            request_id: id,
            data: data(),
        },
        STDOUT => Record::Stdout {
            request_id: id,
            data: data(),
        },
        STDERR => Record::Stderr {
            request_id: id,
            data: data(),
        },
        DATA => Record::Data {
            request_id: id,
            data: data(),
        },
        GET_VALUES => Record::GetValues {
            pairs: decode_pairs(content, limits)?,
        },
        GET_VALUES_RESULT => Record::GetValuesResult {
            pairs: decode_pairs(content, limits)?,
        },
        UNKNOWN_TYPE => Record::UnknownType {
            record_type: fixed8(header, content)?[0],
        },
        other => Record::Unknown {
            record_type: other,
            request_id: id,
            content: data(),
        },
    })
}

/// Reads one length of a name-value pair: 1 byte if the high bit is clear, else 4 bytes
/// (big-endian, high bit masked off).
fn read_len(bytes: &[u8], pos: &mut usize) -> Result<usize, Error> {
    let first = *bytes.get(*pos).ok_or(Error::PairTruncated)?;
    if first & 0x80 == 0 {
        *pos += 1;
        return Ok(usize::from(first));
    }
    let b = bytes.get(*pos..*pos + 4).ok_or(Error::PairTruncated)?;
    *pos += 4;
    let len = u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]);
    usize::try_from(len).map_err(|_| Error::PairTruncated)
}

/// Decodes a complete name-value pair stream (the concatenated content of all PARAMS records of
/// a request, or one GET_VALUES record).
pub fn decode_pairs(bytes: &[u8], limits: &Limits) -> Result<Vec<Pair>, Error> {
    let mut pairs = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        if pairs.len() >= limits.max_pairs {
            return Err(Error::TooManyPairs {
                limit: limits.max_pairs,
            });
        }
        let name_len = read_len(bytes, &mut pos)?;
        let value_len = read_len(bytes, &mut pos)?;
        for len in [name_len, value_len] {
            if len > limits.max_pair_len {
                return Err(Error::PairTooLong {
                    len,
                    limit: limits.max_pair_len,
                });
            }
        }
        let name_end = pos.checked_add(name_len).ok_or(Error::PairTruncated)?;
        let value_end = name_end
            .checked_add(value_len)
            .ok_or(Error::PairTruncated)?;
        let name = bytes.get(pos..name_end).ok_or(Error::PairTruncated)?;
        let value = bytes.get(name_end..value_end).ok_or(Error::PairTruncated)?;
        pairs.push((name.to_vec(), value.to_vec()));
        pos = value_end;
    }
    Ok(pairs)
}

/// Appends one name-value pair in wire format. Lengths above 2^31-1 cannot be encoded and are
/// truncated to that; callers only encode short, known names and values.
pub fn encode_pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    for len in [name.len(), value.len()] {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let len = u32::try_from(len).unwrap_or(u32::MAX) & 0x7fff_ffff;
            out.extend_from_slice(&(len | 0x8000_0000).to_be_bytes());
        }
    }
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// Appends one record with `content` (at most [`MAX_CONTENT_LEN`] bytes; longer content is cut,
/// use [`encode_stream`] for streams), padded to a multiple of 8.
pub fn encode_record(out: &mut Vec<u8>, record_type: u8, request_id: u16, content: &[u8]) {
    let content = &content[..content.len().min(MAX_CONTENT_LEN)];
    out.extend_from_slice(&record_header(record_type, request_id, content.len()));
    out.extend_from_slice(content);
    out.extend_from_slice(&[0u8; 8][..padding(content.len())]);
}

/// The 8-byte header of a record with `content_len` bytes of content (at most
/// [`MAX_CONTENT_LEN`]; more is cut, as [`encode_record`] cuts the content) and
/// [`padding`]`(content_len)` bytes of padding.
pub fn record_header(record_type: u8, request_id: u16, content_len: usize) -> [u8; 8] {
    let len = content_len.min(MAX_CONTENT_LEN) as u16; // fits: cut to MAX_CONTENT_LEN
    let id = request_id.to_be_bytes();
    let l = len.to_be_bytes();
    [
        VERSION_1,
        record_type,
        id[0],
        id[1],
        l[0],
        l[1],
        padding(content_len) as u8,
        0,
    ]
}

/// Padding after `content_len` bytes of content, to a multiple of 8.
pub fn padding(content_len: usize) -> usize {
    (8 - content_len.min(MAX_CONTENT_LEN) % 8) % 8
}

/// Appends `data` as a stream of `record_type` records of at most [`STREAM_CHUNK`] bytes each,
/// followed by the empty record that ends the stream.
pub fn encode_stream(out: &mut Vec<u8>, record_type: u8, request_id: u16, data: &[u8]) {
    for chunk in data.chunks(STREAM_CHUNK) {
        encode_record(out, record_type, request_id, chunk);
    }
    encode_record(out, record_type, request_id, &[]);
}

/// Appends a complete STDOUT stream (chunks plus the terminating empty record).
pub fn encode_stdout(out: &mut Vec<u8>, request_id: u16, data: &[u8]) {
    encode_stream(out, STDOUT, request_id, data);
}

/// Appends an END_REQUEST record.
pub fn encode_end_request(
    out: &mut Vec<u8>,
    request_id: u16,
    app_status: u32,
    protocol_status: u8,
) {
    let mut body = [0u8; 8];
    body[..4].copy_from_slice(&app_status.to_be_bytes());
    body[4] = protocol_status;
    encode_record(out, END_REQUEST, request_id, &body);
}

/// Appends a BEGIN_REQUEST record (used by clients and tests).
pub fn encode_begin_request(out: &mut Vec<u8>, request_id: u16, role: u16, flags: u8) {
    let mut body = [0u8; 8];
    body[..2].copy_from_slice(&role.to_be_bytes());
    body[2] = flags;
    encode_record(out, BEGIN_REQUEST, request_id, &body);
}

/// Appends a GET_VALUES_RESULT record with the given pairs (must fit one record; the three
/// standard variables take a few dozen bytes).
pub fn encode_get_values_result(out: &mut Vec<u8>, pairs: &[(&str, String)]) {
    let mut body = Vec::new();
    for (name, value) in pairs {
        encode_pair(&mut body, name.as_bytes(), value.as_bytes());
    }
    encode_record(out, GET_VALUES_RESULT, 0, &body);
}

/// Appends an UNKNOWN_TYPE record answering a management record of type `record_type`.
pub fn encode_unknown_type(out: &mut Vec<u8>, record_type: u8) {
    let mut body = [0u8; 8];
    body[0] = record_type;
    encode_record(out, UNKNOWN_TYPE, 0, &body);
}

/// Streaming reader of typed records from any [`Read`], reusing one content buffer.
#[derive(Debug)]
pub struct RecordReader<R> {
    inner: R,
    limits: Limits,
    buf: Vec<u8>,
}

impl<R: Read> RecordReader<R> {
    /// Wraps `inner`, using `limits` for name-value pairs in management records.
    pub fn new(inner: R, limits: Limits) -> Self {
        RecordReader {
            inner,
            limits,
            buf: Vec::new(),
        }
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The wrapped reader, mutably (e.g. to write replies on the same socket).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Reads the next record. `Ok(None)` means the input ended cleanly between records.
    pub fn next_record(&mut self) -> Result<Option<Record>, Error> {
        let mut head = [0u8; HEADER_LEN];
        // The first byte decides between a clean end and a truncated record.
        if read_full(&mut self.inner, &mut head[..1])? == 0 {
            return Ok(None);
        }
        fill(&mut self.inner, &mut head[1..])?;
        let header = parse_header(&head)?;
        let total = usize::from(header.content_length) + usize::from(header.padding_length);
        self.buf.resize(total, 0);
        fill(&mut self.inner, &mut self.buf)?;
        let content = &self.buf[..usize::from(header.content_length)];
        parse_body(&header, content, &self.limits).map(Some)
    }
}

/// Reads until `buf` is full or the input ends; returns bytes read. Retries on EINTR.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, Error> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Ok(got)
}

fn fill(r: &mut impl Read, buf: &mut [u8]) -> Result<(), Error> {
    let got = read_full(r, buf)?;
    if got < buf.len() {
        return Err(Error::Truncated {
            needed: buf.len() - got,
        });
    }
    Ok(())
}

/// Parses a whole byte string into records with default [`Limits`]. Meant for fuzzing and
/// tests: it must return an error, never panic, whatever `bytes` holds.
pub fn parse_stream(bytes: &[u8]) -> Result<Vec<Record>, Error> {
    let mut reader = RecordReader::new(bytes, Limits::default());
    let mut records = Vec::new();
    while let Some(record) = reader.next_record()? {
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(t: u8, id: u16, content: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(&mut out, t, id, content);
        out
    }

    #[test]
    fn header_fields_and_version() {
        let h = parse_header(&[1, 5, 0x12, 0x34, 0x01, 0x02, 6, 0]).unwrap();
        assert_eq!(
            h,
            Header {
                version: 1,
                record_type: STDIN,
                request_id: 0x1234,
                content_length: 0x0102,
                padding_length: 6
            }
        );
        assert!(matches!(
            parse_header(&[2, 1, 0, 1, 0, 8, 0, 0]),
            Err(Error::BadVersion(2))
        ));
        assert!(matches!(
            parse_stream(b"GET / HTTP/1.1\r\n\r\n"),
            Err(Error::BadVersion(b'G'))
        ));
    }

    #[test]
    fn every_record_type_round_trips() {
        let mut s = Vec::new();
        encode_begin_request(&mut s, 1, ROLE_RESPONDER, KEEP_CONN);
        s.extend(rec(ABORT_REQUEST, 1, &[]));
        encode_end_request(&mut s, 1, 7, CANT_MPX_CONN);
        let mut pairs = Vec::new();
        encode_pair(&mut pairs, b"REQUEST_METHOD", b"GET");
        s.extend(rec(PARAMS, 1, &pairs));
        s.extend(rec(PARAMS, 1, &[]));
        s.extend(rec(STDIN, 1, b"body"));
        encode_stdout(&mut s, 1, b"out");
        s.extend(rec(STDERR, 1, b"err"));
        s.extend(rec(DATA, 1, b"data"));
        let mut gv = Vec::new();
        encode_pair(&mut gv, b"FCGI_MAX_CONNS", b"");
        s.extend(rec(GET_VALUES, 0, &gv));
        encode_get_values_result(&mut s, &[("FCGI_MPXS_CONNS", "0".into())]);
        encode_unknown_type(&mut s, 42);
        s.extend(rec(42, 0, b"x"));
        let got = parse_stream(&s).unwrap();
        let v = |d: &[u8]| d.to_vec();
        assert_eq!(
            got,
            vec![
                Record::BeginRequest {
                    request_id: 1,
                    role: 1,
                    flags: 1
                },
                Record::AbortRequest { request_id: 1 },
                Record::EndRequest {
                    request_id: 1,
                    app_status: 7,
                    protocol_status: 1
                },
                Record::Params {
                    request_id: 1,
                    data: pairs.clone()
                },
                Record::Params {
                    request_id: 1,
                    data: vec![]
                },
                Record::Stdin {
                    request_id: 1,
                    data: v(b"body")
                },
                Record::Stdout {
                    request_id: 1,
                    data: v(b"out")
                },
                Record::Stdout {
                    request_id: 1,
                    data: vec![]
                },
                Record::Stderr {
                    request_id: 1,
                    data: v(b"err")
                },
                Record::Data {
                    request_id: 1,
                    data: v(b"data")
                },
                Record::GetValues {
                    pairs: vec![(v(b"FCGI_MAX_CONNS"), vec![])]
                },
                Record::GetValuesResult {
                    pairs: vec![(v(b"FCGI_MPXS_CONNS"), v(b"0"))]
                },
                Record::UnknownType { record_type: 42 },
                Record::Unknown {
                    record_type: 42,
                    request_id: 0,
                    content: v(b"x")
                },
            ]
        );
        assert_eq!(got[0].request_id(), 1);
        assert_eq!(got[10].request_id(), 0);
    }

    #[test]
    fn padding_is_skipped_and_emitted() {
        let r = rec(STDIN, 3, b"abc");
        assert_eq!(r.len(), 16, "3 content bytes padded to 8");
        assert_eq!(r[6], 5);
        // Odd, non-aligned padding from a peer is accepted too.
        let mut odd = vec![1, STDIN, 0, 3, 0, 2, 200, 0, b'h', b'i'];
        odd.extend([0xAA; 200]);
        odd.extend(rec(STDIN, 3, &[]));
        let got = parse_stream(&odd).unwrap();
        assert_eq!(
            got[0],
            Record::Stdin {
                request_id: 3,
                data: b"hi".to_vec()
            }
        );
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn pairs_with_one_and_four_byte_lengths() {
        let long_value = vec![b'v'; 300];
        let long_name = vec![b'N'; 128];
        let mut s = Vec::new();
        encode_pair(&mut s, b"A", b"1");
        encode_pair(&mut s, b"QUERY_STRING", &long_value);
        encode_pair(&mut s, &long_name, b"");
        assert_eq!(&s[..2], &[1, 1]);
        // Second pair: 1-byte name length 12, 4-byte value length 300 with high bit set.
        assert_eq!(&s[4..9], &[12, 0x80, 0, 1, 44]);
        let pairs = decode_pairs(&s, &Limits::default()).unwrap();
        assert_eq!(
            pairs,
            vec![
                (b"A".to_vec(), b"1".to_vec()),
                (b"QUERY_STRING".to_vec(), long_value),
                (long_name, vec![])
            ]
        );
        // A 4-byte length may also encode a small value.
        let odd = [0x80, 0, 0, 1, 0x80, 0, 0, 2, b'x', b'y', b'z'];
        assert_eq!(
            decode_pairs(&odd, &Limits::default()).unwrap(),
            vec![(b"x".to_vec(), b"yz".to_vec())]
        );
    }

    #[test]
    fn pair_errors() {
        let l = Limits::default();
        for bad in [
            &[5u8][..],                          // value length missing
            &[0x80, 0, 0][..],                   // 4-byte length cut short
            &[3, 3, b'a', b'b', b'c', b'd'][..], // value cut short
            &[0xff, 0xff, 0xff, 0xff, 0][..],    // absurd name length
        ] {
            assert!(decode_pairs(bad, &l).is_err(), "{bad:?}");
        }
        let tight = Limits {
            max_pair_len: 4,
            ..l
        };
        let mut s = Vec::new();
        encode_pair(&mut s, b"NAME", b"too long");
        assert!(matches!(
            decode_pairs(&s, &tight),
            Err(Error::PairTooLong { len: 8, limit: 4 })
        ));
        let few = Limits { max_pairs: 1, ..l };
        let mut two = Vec::new();
        encode_pair(&mut two, b"a", b"");
        encode_pair(&mut two, b"b", b"");
        assert!(matches!(
            decode_pairs(&two, &few),
            Err(Error::TooManyPairs { limit: 1 })
        ));
    }

    #[test]
    fn truncated_input_is_an_error_at_every_cut() {
        let mut s = Vec::new();
        encode_begin_request(&mut s, 1, ROLE_RESPONDER, 0);
        encode_stdout(&mut s, 1, b"hello");
        for cut in 1..s.len() {
            let res = parse_stream(&s[..cut]);
            // Cuts on a record boundary parse fine; all others must fail cleanly.
            if cut == 16 || cut == 32 {
                assert!(res.is_ok(), "cut {cut}");
            } else {
                assert!(
                    matches!(res, Err(Error::Truncated { .. })),
                    "cut {cut}: {res:?}"
                );
            }
        }
        assert_eq!(parse_stream(&[]).unwrap(), vec![]);
    }

    #[test]
    fn bad_lengths_and_ids() {
        // BEGIN_REQUEST with 4 content bytes.
        let r = rec(BEGIN_REQUEST, 1, &[0, 1, 0, 0]);
        assert!(matches!(
            parse_stream(&r),
            Err(Error::BadLength {
                record_type: 1,
                expected: 8,
                got: 4
            })
        ));
        assert!(parse_stream(&rec(END_REQUEST, 1, &[0; 9])).is_err());
        assert!(parse_stream(&rec(UNKNOWN_TYPE, 0, &[])).is_err());
        assert!(matches!(
            parse_stream(&rec(GET_VALUES, 1, &[])),
            Err(Error::BadRequestId { .. })
        ));
        assert!(matches!(
            parse_stream(&rec(STDIN, 0, &[])),
            Err(Error::BadRequestId { .. })
        ));
        // Header claiming 65535 content bytes with none present.
        assert!(matches!(
            parse_stream(&[1, STDIN, 0, 1, 0xff, 0xff, 0xff, 0]),
            Err(Error::Truncated { needed: 65790 })
        ));
    }

    #[test]
    fn long_streams_are_split() {
        let data = vec![7u8; 200_000];
        let mut s = Vec::new();
        encode_stdout(&mut s, 9, &data);
        let recs = parse_stream(&s).unwrap();
        assert_eq!(recs.len(), 5, "4 chunks + end marker");
        let mut joined = Vec::new();
        for r in &recs {
            match r {
                Record::Stdout {
                    request_id: 9,
                    data,
                } => {
                    assert!(data.len() <= MAX_CONTENT_LEN);
                    joined.extend_from_slice(data)
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic sweep; cargo-fuzz does the real work.
        let mut x: u32 = 12345;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    if i % 8 == 0 {
                        1
                    } else {
                        x as u8
                    }
                })
                .collect();
            let _ = parse_stream(&bytes);
        }
    }
}

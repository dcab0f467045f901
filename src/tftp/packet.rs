//! TFTP packets: pure encoding and decoding, no I/O.
//!
//! Covers RFC 1350 (RRQ, WRQ, DATA, ACK, ERROR) and the option extension of RFC 2347
//! (options appended to requests, OACK). Option *values* are interpreted by the server,
//! not here: this layer only moves strings.
//! Decoding never panics on any input; encoding never fails, and `decode(encode(p)) == p`
//! for every packet whose strings contain no NUL byte (a NUL would end the string on the
//! wire, so the encoder drops NUL bytes inside strings instead of producing a malformed
//! packet).

use std::fmt;

/// Block size of RFC 1350, used unless a client negotiates `blksize`.
pub const DEFAULT_BLKSIZE: u16 = 512;
/// Smallest block size RFC 2348 allows.
pub const MIN_BLKSIZE: u16 = 8;
/// Largest block size RFC 2348 allows (fits a UDP datagram with its 4-byte header).
pub const MAX_BLKSIZE: u16 = 65464;

const OP_RRQ: u16 = 1;
const OP_WRQ: u16 = 2;
const OP_DATA: u16 = 3;
const OP_ACK: u16 = 4;
const OP_ERROR: u16 = 5;
const OP_OACK: u16 = 6;

/// One TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Read request (opcode 1).
    Rrq(Request),
    /// Write request (opcode 2); a read-only server answers it with an error.
    Wrq(Request),
    /// A block of file data (opcode 3); a block shorter than the block size ends the transfer.
    Data {
        /// Block number, starting at 1 and wrapping from 65535 to 0 for big files.
        block: u16,
        /// The payload.
        data: Vec<u8>,
    },
    /// Acknowledgement of a block (opcode 4); block 0 acknowledges an OACK.
    Ack {
        /// The block acknowledged.
        block: u16,
    },
    /// An error, which ends the transfer (opcode 5).
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
    /// Option acknowledgement (opcode 6, RFC 2347): the options the server accepted.
    Oack {
        /// Accepted options with the values in force.
        options: Vec<TftpOption>,
    },
}

/// The body of a read or write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The requested file name, as the client sent it.
    pub filename: String,
    /// Transfer mode.
    pub mode: Mode,
    /// RFC 2347 options in the order the client sent them.
    pub options: Vec<TftpOption>,
}

/// One RFC 2347 option: a name (case-insensitive) and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TftpOption {
    /// Option name, e.g. `blksize`.
    pub name: String,
    /// Option value, e.g. `1468`.
    pub value: String,
}

impl TftpOption {
    /// An option from a name and a value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// Transfer mode of a request (the wire form is case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Text with CR LF line ends (RFC 764).
    Netascii,
    /// Raw bytes.
    Octet,
    /// Obsolete mail delivery mode.
    Mail,
}

impl Mode {
    /// The mode's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Netascii => "netascii",
            Mode::Octet => "octet",
            Mode::Mail => "mail",
        }
    }

    fn parse(s: &str) -> Option<Mode> {
        [Mode::Netascii, Mode::Octet, Mode::Mail]
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// TFTP error codes (RFC 1350, plus 8 from RFC 2347).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 0: not defined, see the message.
    NotDefined,
    /// 1: file not found.
    FileNotFound,
    /// 2: access violation.
    AccessViolation,
    /// 3: disk full or allocation exceeded.
    DiskFull,
    /// 4: illegal TFTP operation.
    IllegalOperation,
    /// 5: unknown transfer ID.
    UnknownTransferId,
    /// 6: file already exists.
    FileExists,
    /// 7: no such user.
    NoSuchUser,
    /// 8: option negotiation refused (RFC 2347).
    OptionNegotiation,
    /// Any other code a peer sent.
    Other(u16),
}

impl ErrorCode {
    /// The numeric code on the wire.
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::NotDefined => 0,
            ErrorCode::FileNotFound => 1,
            ErrorCode::AccessViolation => 2,
            ErrorCode::DiskFull => 3,
            ErrorCode::IllegalOperation => 4,
            ErrorCode::UnknownTransferId => 5,
            ErrorCode::FileExists => 6,
            ErrorCode::NoSuchUser => 7,
            ErrorCode::OptionNegotiation => 8,
            ErrorCode::Other(code) => code,
        }
    }
}

impl From<u16> for ErrorCode {
    fn from(code: u16) -> Self {
        match code {
            0 => ErrorCode::NotDefined,
            1 => ErrorCode::FileNotFound,
            2 => ErrorCode::AccessViolation,
            3 => ErrorCode::DiskFull,
            4 => ErrorCode::IllegalOperation,
            5 => ErrorCode::UnknownTransferId,
            6 => ErrorCode::FileExists,
            7 => ErrorCode::NoSuchUser,
            8 => ErrorCode::OptionNegotiation,
            other => ErrorCode::Other(other),
        }
    }
}

/// Why a datagram is not a valid TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the packet's fixed part.
    #[error("packet too short ({0} bytes)")]
    TooShort(usize),
    /// The opcode is not 1 to 6.
    #[error("unknown opcode {0}")]
    UnknownOpcode(u16),
    /// A string field is not terminated by a NUL byte.
    #[error("{0} is not NUL-terminated")]
    Unterminated(&'static str),
    /// A string field is not UTF-8 (TFTP strings are ASCII).
    #[error("{0} is not valid text")]
    NotText(&'static str),
    /// The request's mode is not netascii, octet or mail.
    #[error("unknown transfer mode {0:?}")]
    UnknownMode(String),
    /// An option name without a value.
    #[error("option {0:?} has no value")]
    OptionWithoutValue(String),
}

impl Packet {
    /// Decode one datagram.
    pub fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
        let (op, body) = split_u16(bytes).ok_or(DecodeError::TooShort(bytes.len()))?;
        match op {
            OP_RRQ => decode_request(body).map(Packet::Rrq),
            OP_WRQ => decode_request(body).map(Packet::Wrq),
            OP_DATA => {
                let (block, data) = split_u16(body).ok_or(DecodeError::TooShort(bytes.len()))?;
                Ok(Packet::Data {
                    block,
                    data: data.to_vec(),
                })
            }
            OP_ACK => {
                // Trailing bytes after the block number are ignored: some clients pad.
                let (block, _) = split_u16(body).ok_or(DecodeError::TooShort(bytes.len()))?;
                Ok(Packet::Ack { block })
            }
            OP_ERROR => {
                let (code, rest) = split_u16(body).ok_or(DecodeError::TooShort(bytes.len()))?;
                // The message is only for humans: be lenient about a missing NUL or bad bytes.
                let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                Ok(Packet::Error {
                    code: ErrorCode::from(code),
                    message: String::from_utf8_lossy(&rest[..end]).into_owned(),
                })
            }
            OP_OACK => decode_options(body).map(|options| Packet::Oack { options }),
            other => Err(DecodeError::UnknownOpcode(other)),
        }
    }

    /// Encode into a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode_into(&mut buf);
        buf
    }

    /// Append the encoded packet to `buf`.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        match self {
            Packet::Rrq(request) => encode_request(OP_RRQ, request, buf),
            Packet::Wrq(request) => encode_request(OP_WRQ, request, buf),
            Packet::Data { block, data } => {
                buf.extend_from_slice(&data_header(*block));
                buf.extend_from_slice(data);
            }
            Packet::Ack { block } => {
                buf.extend_from_slice(&OP_ACK.to_be_bytes());
                buf.extend_from_slice(&block.to_be_bytes());
            }
            Packet::Error { code, message } => {
                buf.extend_from_slice(&OP_ERROR.to_be_bytes());
                buf.extend_from_slice(&code.code().to_be_bytes());
                put_str(buf, message);
            }
            Packet::Oack { options } => {
                buf.extend_from_slice(&OP_OACK.to_be_bytes());
                put_options(buf, options);
            }
        }
    }
}

/// The 4-byte header of a DATA packet, so a sender can read file data straight
/// into the bytes after it.
pub fn data_header(block: u16) -> [u8; 4] {
    let [a, b] = OP_DATA.to_be_bytes();
    let [c, d] = block.to_be_bytes();
    [a, b, c, d]
}

fn split_u16(bytes: &[u8]) -> Option<(u16, &[u8])> {
    match bytes {
        [a, b, rest @ ..] => Some((u16::from_be_bytes([*a, *b]), rest)),
        _ => None,
    }
}

/// Split off one NUL-terminated string.
fn take_str<'a>(bytes: &'a [u8], field: &'static str) -> Result<(&'a str, &'a [u8]), DecodeError> {
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(DecodeError::Unterminated(field))?;
    let text = std::str::from_utf8(&bytes[..end]).map_err(|_| DecodeError::NotText(field))?;
    Ok((text, &bytes[end + 1..]))
}

fn decode_request(body: &[u8]) -> Result<Request, DecodeError> {
    let (filename, rest) = take_str(body, "file name")?;
    let (mode, rest) = take_str(rest, "mode")?;
    let mode = Mode::parse(mode).ok_or_else(|| DecodeError::UnknownMode(mode.to_owned()))?;
    Ok(Request {
        filename: filename.to_owned(),
        mode,
        options: decode_options(rest)?,
    })
}

fn decode_options(mut bytes: &[u8]) -> Result<Vec<TftpOption>, DecodeError> {
    let mut options = Vec::new();
    while !bytes.is_empty() {
        let (name, rest) = take_str(bytes, "option name")?;
        if rest.is_empty() {
            return Err(DecodeError::OptionWithoutValue(name.to_owned()));
        }
        let (value, rest) = take_str(rest, "option value")?;
        options.push(TftpOption::new(name, value));
        bytes = rest;
    }
    Ok(options)
}

fn encode_request(op: u16, request: &Request, buf: &mut Vec<u8>) {
    buf.extend_from_slice(&op.to_be_bytes());
    put_str(buf, &request.filename);
    put_str(buf, request.mode.as_str());
    put_options(buf, &request.options);
}

fn put_options(buf: &mut Vec<u8>, options: &[TftpOption]) {
    for option in options {
        put_str(buf, &option.name);
        put_str(buf, &option.value);
    }
}

/// Append `s` and its terminating NUL, dropping NUL bytes inside `s`.
fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend(s.bytes().filter(|&b| b != 0));
    buf.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(bytes: &[u8], expect: Result<Packet, DecodeError>) {
        assert_eq!(Packet::decode(bytes), expect, "decoding {bytes:?}");
    }

    #[test]
    fn decodes_uboot_read_request() {
        check(
            b"\x00\x0142/zImage\x00octet\x00timeout\x005\x00tsize\x000\x00blksize\x001468\x00",
            Ok(Packet::Rrq(Request {
                filename: "42/zImage".into(),
                mode: Mode::Octet,
                options: vec![
                    TftpOption::new("timeout", "5"),
                    TftpOption::new("tsize", "0"),
                    TftpOption::new("blksize", "1468"),
                ],
            })),
        );
    }

    #[test]
    fn mode_is_case_insensitive() {
        check(
            b"\x00\x02f\x00NetASCII\x00",
            Ok(Packet::Wrq(Request {
                filename: "f".into(),
                mode: Mode::Netascii,
                options: vec![],
            })),
        );
    }

    #[test]
    fn decodes_fixed_packets() {
        check(
            b"\x00\x03\x01\x02abc",
            Ok(Packet::Data {
                block: 0x0102,
                data: b"abc".to_vec(),
            }),
        );
        check(
            b"\x00\x03\xff\xff",
            Ok(Packet::Data {
                block: 65535,
                data: vec![],
            }),
        );
        check(b"\x00\x04\x00\x07", Ok(Packet::Ack { block: 7 }));
        check(b"\x00\x04\x00\x07\x00", Ok(Packet::Ack { block: 7 }));
        check(
            b"\x00\x05\x00\x01no such file\x00",
            Ok(Packet::Error {
                code: ErrorCode::FileNotFound,
                message: "no such file".into(),
            }),
        );
        check(
            b"\x00\x05\x00\x63unterminated",
            Ok(Packet::Error {
                code: ErrorCode::Other(99),
                message: "unterminated".into(),
            }),
        );
        check(
            b"\x00\x06blksize\x00512\x00",
            Ok(Packet::Oack {
                options: vec![TftpOption::new("blksize", "512")],
            }),
        );
    }

    #[test]
    fn rejects_malformed_packets() {
        check(b"", Err(DecodeError::TooShort(0)));
        check(b"\x00", Err(DecodeError::TooShort(1)));
        check(b"\x00\x04\x00", Err(DecodeError::TooShort(3)));
        check(b"\x00\x09", Err(DecodeError::UnknownOpcode(9)));
        check(b"\x00\x01file", Err(DecodeError::Unterminated("file name")));
        check(
            b"\x00\x01file\x00octet",
            Err(DecodeError::Unterminated("mode")),
        );
        check(
            b"\x00\x01f\x00binary\x00",
            Err(DecodeError::UnknownMode("binary".into())),
        );
        check(
            b"\x00\x01\xff\x00octet\x00",
            Err(DecodeError::NotText("file name")),
        );
        check(
            b"\x00\x01f\x00octet\x00blksize\x00",
            Err(DecodeError::OptionWithoutValue("blksize".into())),
        );
        check(
            b"\x00\x01f\x00octet\x00blksize\x00512",
            Err(DecodeError::Unterminated("option value")),
        );
    }

    #[test]
    fn encodes_wire_bytes() {
        assert_eq!(Packet::Ack { block: 258 }.encode(), b"\x00\x04\x01\x02");
        assert_eq!(
            Packet::Error {
                code: ErrorCode::AccessViolation,
                message: "read-only".into()
            }
            .encode(),
            b"\x00\x05\x00\x02read-only\x00"
        );
        assert_eq!(data_header(65535), [0, 3, 255, 255]);
    }

    #[test]
    fn encoder_drops_nul_inside_strings() {
        let packet = Packet::Error {
            code: ErrorCode::NotDefined,
            message: "a\0b".into(),
        };
        assert_eq!(packet.encode(), b"\x00\x05\x00\x00ab\x00");
    }

    #[test]
    fn error_codes_round_trip_through_numbers() {
        for n in 0..=20u16 {
            assert_eq!(ErrorCode::from(n).code(), n);
        }
    }

    fn text() -> impl Strategy<Value = String> {
        "[^\u{0}]{0,24}"
    }

    fn options() -> impl Strategy<Value = Vec<TftpOption>> {
        prop::collection::vec(
            (text(), text()).prop_map(|(n, v)| TftpOption::new(n, v)),
            0..5,
        )
    }

    fn request() -> impl Strategy<Value = Request> {
        (
            text(),
            prop_oneof![Just(Mode::Netascii), Just(Mode::Octet), Just(Mode::Mail)],
            options(),
        )
            .prop_map(|(filename, mode, options)| Request {
                filename,
                mode,
                options,
            })
    }

    fn packet() -> impl Strategy<Value = Packet> {
        prop_oneof![
            request().prop_map(Packet::Rrq),
            request().prop_map(Packet::Wrq),
            (any::<u16>(), prop::collection::vec(any::<u8>(), 0..600))
                .prop_map(|(block, data)| Packet::Data { block, data }),
            any::<u16>().prop_map(|block| Packet::Ack { block }),
            (any::<u16>(), text()).prop_map(|(code, message)| Packet::Error {
                code: ErrorCode::from(code),
                message
            }),
            options().prop_map(|options| Packet::Oack { options }),
        ]
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
            let _ = Packet::decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_near_valid_requests(
            op in 0u16..8,
            body in prop::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..64),
        ) {
            let mut bytes = op.to_be_bytes().to_vec();
            bytes.extend(body);
            let _ = Packet::decode(&bytes);
        }

        #[test]
        fn encode_then_decode_round_trips(packet in packet()) {
            prop_assert_eq!(Packet::decode(&packet.encode()), Ok(packet));
        }
    }
}

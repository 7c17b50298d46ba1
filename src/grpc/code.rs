//! gRPC status codes.

use std::fmt;

use http::{HeaderMap, HeaderValue, StatusCode};

/// The header (or trailer) that carries a gRPC status code.
///
/// ```
/// use seawall::grpc::{Code, GRPC_STATUS};
///
/// let mut trailers = http::HeaderMap::new();
/// trailers.insert(GRPC_STATUS, http::HeaderValue::from_static("14"));
/// assert_eq!(Code::from_headers(&trailers), Some(Code::Unavailable));
/// ```
pub const GRPC_STATUS: &str = "grpc-status";

/// A gRPC status code (the gRPC core's `doc/statuscodes.md`).
///
/// Parsing never fails: a value that is not one of the 17 codes (garbage, a negative
/// number, an unassigned number such as 99) is [`Code::Unknown`], as tonic and
/// grpc-java read it.
///
/// ```
/// use http::HeaderValue;
/// use seawall::grpc::Code;
///
/// assert_eq!(Code::from_i32(14), Code::Unavailable);
/// assert_eq!(Code::from_header_value(&HeaderValue::from_static("5")), Code::NotFound);
/// assert_eq!(Code::from_header_value(&HeaderValue::from_static("fourteen")), Code::Unknown);
/// assert_eq!(Code::from_i32(99), Code::Unknown);
/// assert_eq!(Code::Unavailable.to_string(), "UNAVAILABLE");
/// assert_eq!(i32::from(Code::DeadlineExceeded), 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Code {
    /// 0: not an error.
    Ok = 0,
    /// 1: the operation was cancelled, typically by the caller.
    Cancelled = 1,
    /// 2: an unknown error, or a status that could not be read.
    Unknown = 2,
    /// 3: the client sent an invalid argument.
    InvalidArgument = 3,
    /// 4: the deadline expired before the operation could complete.
    DeadlineExceeded = 4,
    /// 5: a requested entity was not found.
    NotFound = 5,
    /// 6: the entity the client tried to create already exists.
    AlreadyExists = 6,
    /// 7: the caller may not do this.
    PermissionDenied = 7,
    /// 8: a resource (a quota, the server's capacity) is exhausted.
    ResourceExhausted = 8,
    /// 9: the system is not in the state the operation requires.
    FailedPrecondition = 9,
    /// 10: the operation was aborted, typically by a concurrency conflict.
    Aborted = 10,
    /// 11: the operation went past the valid range.
    OutOfRange = 11,
    /// 12: the operation is not implemented or not supported.
    Unimplemented = 12,
    /// 13: an internal error: an invariant of the server is broken.
    Internal = 13,
    /// 14: the service is unavailable, most likely transiently.
    Unavailable = 14,
    /// 15: unrecoverable data loss or corruption.
    DataLoss = 15,
    /// 16: the request lacks valid credentials.
    Unauthenticated = 16,
}

impl Code {
    /// Every code, in numeric order.
    const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The code with this number; [`Code::Unknown`] for any number that is not a code.
    ///
    /// ```
    /// use seawall::grpc::Code;
    ///
    /// assert_eq!(Code::from_i32(8), Code::ResourceExhausted);
    /// assert_eq!(Code::from_i32(-1), Code::Unknown);
    /// ```
    pub const fn from_i32(value: i32) -> Code {
        if value >= 0 && value < Self::ALL.len() as i32 {
            Self::ALL[value as usize]
        } else {
            Code::Unknown
        }
    }

    /// The code in a `grpc-status` value: ASCII decimal digits. Anything else (empty,
    /// signed, spaced, non-ASCII, too long) is [`Code::Unknown`].
    ///
    /// ```
    /// use http::HeaderValue;
    /// use seawall::grpc::Code;
    ///
    /// assert_eq!(Code::from_header_value(&HeaderValue::from_static("0")), Code::Ok);
    /// assert_eq!(Code::from_header_value(&HeaderValue::from_static("014")), Code::Unavailable);
    /// assert_eq!(Code::from_header_value(&HeaderValue::from_static("")), Code::Unknown);
    /// ```
    pub fn from_header_value(value: &HeaderValue) -> Code {
        let bytes = value.as_bytes();
        if bytes.is_empty() || bytes.len() > 9 || !bytes.iter().all(u8::is_ascii_digit) {
            return Code::Unknown;
        }
        // At most nine digits: fits in an i32.
        let number = bytes.iter().fold(0i32, |n, b| n * 10 + i32::from(b - b'0'));
        Code::from_i32(number)
    }

    /// The code in `headers`' `grpc-status`, if there is one (see
    /// [`from_header_value`](Self::from_header_value) for how a value is read).
    ///
    /// ```
    /// use seawall::grpc::Code;
    ///
    /// let mut trailers = http::HeaderMap::new();
    /// assert_eq!(Code::from_headers(&trailers), None);
    /// trailers.insert("grpc-status", http::HeaderValue::from_static("13"));
    /// assert_eq!(Code::from_headers(&trailers), Some(Code::Internal));
    /// ```
    pub fn from_headers(headers: &HeaderMap) -> Option<Code> {
        headers.get(GRPC_STATUS).map(Code::from_header_value)
    }

    /// The code a client reads from a response that has a non-200 HTTP status and no
    /// `grpc-status` (sent by an HTTP intermediary that does not speak gRPC), per the
    /// gRPC core's `doc/http-grpc-status-mapping.md`: 400 is `INTERNAL`, 401
    /// `UNAUTHENTICATED`, 403 `PERMISSION_DENIED`, 404 `UNIMPLEMENTED`; 429, 502, 503
    /// and 504 are `UNAVAILABLE`; any other status is `UNKNOWN`.
    ///
    /// ```
    /// use http::StatusCode;
    /// use seawall::grpc::Code;
    ///
    /// assert_eq!(Code::from_http_status(StatusCode::SERVICE_UNAVAILABLE), Code::Unavailable);
    /// assert_eq!(Code::from_http_status(StatusCode::INTERNAL_SERVER_ERROR), Code::Unknown);
    /// ```
    pub const fn from_http_status(status: StatusCode) -> Code {
        match status.as_u16() {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }

    /// The code's number.
    ///
    /// ```
    /// use seawall::grpc::Code;
    ///
    /// assert_eq!(Code::Unauthenticated.as_i32(), 16);
    /// ```
    pub const fn as_i32(self) -> i32 {
        self as i32
    }

    /// The code's name as the gRPC specification spells it, e.g. `"DEADLINE_EXCEEDED"`.
    ///
    /// ```
    /// use seawall::grpc::Code;
    ///
    /// assert_eq!(Code::DeadlineExceeded.as_str(), "DEADLINE_EXCEEDED");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// This code's bit in a [`CodeSet`].
    const fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl From<Code> for i32 {
    fn from(code: Code) -> i32 {
        code.as_i32()
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of gRPC codes: one bit each.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CodeSet(u32);

impl CodeSet {
    pub(crate) const fn of(codes: &[Code]) -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < codes.len() {
            bits |= codes[i].bit();
            i += 1;
        }
        Self(bits)
    }

    pub(crate) const fn contains(self, code: Code) -> bool {
        self.0 & code.bit() != 0
    }
}

impl fmt::Debug for CodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(Code::ALL.iter().filter(|code| self.contains(**code)))
            .finish()
    }
}

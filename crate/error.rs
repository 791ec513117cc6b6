//! The one error type of the native core. Every failure carries a stable code that the
//! TypeScript layer turns into a `SturdyError` with the same `code`.

use std::fmt;
use std::io;

/// Stable error codes, shared with the TypeScript `SturdyError`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Locked,
    Corrupt,
    Closed,
    Poisoned,
    RecordTooLarge,
    InvalidArg,
    NotFound,
    Io,
    NoMemory,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Locked => "ERR_LOCKED",
            Code::Corrupt => "ERR_CORRUPT",
            Code::Closed => "ERR_CLOSED",
            Code::Poisoned => "ERR_POISONED",
            Code::RecordTooLarge => "ERR_RECORD_TOO_LARGE",
            Code::InvalidArg => "ERR_INVALID_ARG",
            Code::NotFound => "ERR_NOT_FOUND",
            Code::Io => "ERR_IO",
            Code::NoMemory => "ERR_NO_MEMORY",
        }
    }
}

#[derive(Clone, Debug)]
pub struct WalError {
    pub code: Code,
    pub message: String,
    /// The segment file a corruption was found in.
    pub segment: Option<String>,
    /// Byte offset inside `segment`.
    pub offset: Option<u64>,
    /// The OS error number, for I/O failures.
    pub errno: Option<i32>,
}

pub type Result<T, E = WalError> = std::result::Result<T, E>;

impl WalError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        WalError { code, message: message.into(), segment: None, offset: None, errno: None }
    }

    pub fn io(context: &str, err: io::Error) -> Self {
        WalError {
            code: Code::Io,
            message: format!("{context}: {err}"),
            segment: None,
            offset: None,
            errno: err.raw_os_error(),
        }
    }

    pub fn corrupt(segment: &str, offset: u64, what: &str) -> Self {
        WalError {
            code: Code::Corrupt,
            message: format!("corrupt log: {what} in segment {segment} at offset {offset}"),
            segment: Some(segment.to_string()),
            offset: Some(offset),
            errno: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        WalError::new(Code::InvalidArg, message)
    }

    /// The error every operation gets once a write or barrier has failed.
    pub fn poisoned(cause: &WalError) -> Self {
        WalError {
            code: Code::Poisoned,
            message: format!("the log is poisoned by an earlier I/O failure and accepts no more writes ({})", cause.message),
            segment: None,
            offset: None,
            errno: cause.errno,
        }
    }

    /// A JSON rendering the TypeScript layer parses back into a `SturdyError`.
    pub fn to_json(&self) -> String {
        let mut out = format!("{{\"code\":\"{}\",\"message\":{}", self.code.as_str(), json_string(&self.message));
        if let Some(s) = &self.segment {
            out.push_str(&format!(",\"segment\":{}", json_string(s)));
        }
        if let Some(o) = self.offset {
            out.push_str(&format!(",\"offset\":{o}"));
        }
        if let Some(e) = self.errno {
            out.push_str(&format!(",\"errno\":{e}"));
        }
        out.push('}');
        out
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for WalError {}

//! What the fuzz targets share: values derived from the fuzz input, and reference
//! parsers written from the specifications (not from seawall's code) that the targets
//! compare seawall's parsers with.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use seawall::grpc::Code;
use seawall::http::pushback::Pushback;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Reads fixed-size values from the front of a fuzz input, zero-padded when it runs
/// out, so that every input (even an empty one) gives every value.
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// The next `N` bytes, zero-padded.
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let n = N.min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        out
    }

    /// The next byte.
    pub fn byte(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }

    /// A duration from the next 13 bytes, spread over every scale: the first byte picks
    /// how many bits of seconds to keep (0 to 64) and whether there are nanoseconds, so
    /// that small values are as frequent as huge ones.
    pub fn duration(&mut self) -> Duration {
        let shape = self.byte();
        let secs = u64::from_le_bytes(self.bytes());
        let nanos = u32::from_le_bytes(self.bytes()) % 1_000_000_000;
        let bits = u32::from(shape % 65);
        let secs = secs.checked_shr(64 - bits).unwrap_or(0);
        let nanos = if shape / 65 % 2 == 1 { 0 } else { nanos };
        Duration::new(secs, nanos)
    }

    /// What is left.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Run `future` to completion on this thread's current-thread runtime with tokio's
/// clock paused: nothing here sleeps, so `Instant::now()` stands still and deadlines
/// measured in it are exact.
pub fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime");
    }
    RUNTIME.with(|runtime| runtime.block_on(future))
}

/// Poll `future` once; its output if it was ready.
pub fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// Split `data` at `\n` (which no header value can hold) into at most `N` fields; a
/// field past the last line is `None` (absent), an empty line is an empty value.
pub fn fields<const N: usize>(data: &[u8]) -> [Option<&[u8]>; N] {
    let mut out = [None; N];
    for (slot, field) in out.iter_mut().zip(data.split(|&b| b == b'\n')) {
        *slot = Some(field);
    }
    out
}

/// A duration from a number of nanoseconds, if it fits.
pub fn from_nanos(nanos: u128) -> Option<Duration> {
    let secs = u64::try_from(nanos / NANOS_PER_SEC).ok()?;
    Some(Duration::new(secs, (nanos % NANOS_PER_SEC) as u32))
}

/// ASCII decimal digits, at least one, as a number; `None` past `u128`.
fn decimal(digits: &[u8]) -> Option<u128> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let significant = match digits.iter().position(|&d| d != b'0') {
        Some(first) => &digits[first..],
        None => return Some(0),
    };
    std::str::from_utf8(significant).ok()?.parse().ok()
}

/// `grpc-timeout` per the gRPC HTTP/2 protocol: `TimeoutValue TimeoutUnit`, the value
/// 1 to 8 ASCII digits, the unit one of `H M S m u n`.
pub fn reference_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (unit, digits) = value.split_last()?;
    if digits.len() > 8 {
        return None;
    }
    let unit_nanos: u128 = match unit {
        b'H' => 3_600 * NANOS_PER_SEC,
        b'M' => 60 * NANOS_PER_SEC,
        b'S' => NANOS_PER_SEC,
        b'm' => 1_000_000,
        b'u' => 1_000,
        b'n' => 1,
        _ => return None,
    };
    from_nanos(decimal(digits)? * unit_nanos)
}

/// The units of `grpc-timeout`, finest first, in nanoseconds.
const GRPC_UNITS: [u128; 6] = [
    1,
    1_000,
    1_000_000,
    NANOS_PER_SEC,
    60 * NANOS_PER_SEC,
    3_600 * NANOS_PER_SEC,
];

/// What a `grpc-timeout` for `timeout` must read back as: `timeout` rounded down to the
/// finest unit whose value fits in 8 digits, or 99999999 hours when none does.
pub fn grpc_timeout_floor(timeout: Duration) -> Duration {
    let nanos = timeout.as_nanos();
    let read = GRPC_UNITS
        .iter()
        .find(|&&unit| nanos / unit <= 99_999_999)
        .map_or(99_999_999 * 3_600 * NANOS_PER_SEC, |&unit| {
            nanos / unit * unit
        });
    from_nanos(read).expect("at most 99999999 hours")
}

/// `x-request-timeout-ms` as seawall documents it: 1 to 19 ASCII digits of
/// milliseconds.
pub fn reference_millis(value: &[u8]) -> Option<Duration> {
    if value.len() > 19 {
        return None;
    }
    let millis = u64::try_from(decimal(value)?).ok()?;
    Some(Duration::from_millis(millis))
}

/// `grpc-retry-pushback-ms` per gRFC A6: an ASCII signed 32-bit integer of
/// milliseconds; negative or unparseable means "do not retry". (A leading `+` is not
/// an integer here, as seawall reads it.)
pub fn reference_pushback(value: &[u8]) -> Pushback {
    let (negative, digits) = match value.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, value),
    };
    let Some(magnitude) = decimal(digits) else {
        return Pushback::DoNotRetry;
    };
    let limit = if negative { 1 << 31 } else { (1 << 31) - 1 };
    match (negative, magnitude) {
        (_, m) if m > limit => Pushback::DoNotRetry,
        (true, m) if m > 0 => Pushback::DoNotRetry,
        (_, m) => Pushback::After(Duration::from_millis(m as u64)),
    }
}

/// A `grpc-status` value per the gRPC protocol: ASCII digits of one of the 17 codes;
/// anything else reads as `UNKNOWN` (as tonic and grpc-java read it). More than nine
/// digits is garbage too.
pub fn reference_code(value: &[u8]) -> Code {
    match decimal(value) {
        Some(n) if value.len() <= 9 && n <= 16 => Code::from_i32(n as i32),
        _ => Code::Unknown,
    }
}

/// The codes the default `GrpcClassifier` counts as failures.
pub fn default_failure(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Internal
            | Code::Unknown
    )
}

/// Percent-decode a `grpc-message` per the gRPC protocol (`%` and two hex digits; other
/// bytes are themselves); `None` when a `%` is not followed by two hex digits.
pub fn percent_decode(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = (*bytes.next()? as char).to_digit(16)?;
            let lo = (*bytes.next()? as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// A duration in a policy file as the schema documents it: a decimal number (digits,
/// optionally a point and more digits) and a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`,
/// `h`), surrounding whitespace ignored; exact, rounded down to the nanosecond. `None`
/// when the text is not one, or does not fit a `Duration`.
pub fn reference_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_nanos: u128 = match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        _ => return None,
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) if !fraction.is_empty() => (whole, fraction),
        Some(_) => return None,
        None => (number, ""),
    };
    let whole = decimal(whole.as_bytes())?;
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // floor(unit * 0.fraction), exactly, for any number of digits: multiply the
    // fraction's digits by the unit from the last one up; what carries out of the
    // first is the whole part of the product.
    let carry = fraction.bytes().rev().fold(0u128, |carry, d| {
        (u128::from(d - b'0') * unit_nanos + carry) / 10
    });
    from_nanos(whole.checked_mul(unit_nanos)?.checked_add(carry)?)
}

/// `ShedLoadLayer::retry_after` gives the layer, or (from seawall 0.2) the layer or a
/// `ConfigError`: either way, the layer if it took the wait.
trait Configured {
    fn configured(self) -> Option<seawall::http::ShedLoadLayer>;
}

impl Configured for seawall::http::ShedLoadLayer {
    fn configured(self) -> Option<seawall::http::ShedLoadLayer> {
        Some(self)
    }
}

impl<E> Configured for Result<seawall::http::ShedLoadLayer, E> {
    fn configured(self) -> Option<seawall::http::ShedLoadLayer> {
        self.ok()
    }
}

/// The response [`ShedLoadLayer`](seawall::http::ShedLoadLayer) sheds a request with
/// (a gRPC one if `grpc`) when told to ask clients to wait `wait`; `None` if the layer
/// refuses that wait.
pub fn shed_response(wait: Duration, grpc: bool) -> Option<http::Response<()>> {
    use seawall::bulkhead::BulkheadLayer;
    use seawall::http::ShedLoadLayer;
    use tower::{Layer, Service};

    let request = || {
        let mut request = http::Request::new(());
        if grpc {
            let grpc = http::HeaderValue::from_static("application/grpc");
            request
                .headers_mut()
                .insert(http::header::CONTENT_TYPE, grpc);
        }
        request
    };
    let limit = BulkheadLayer::builder().max_concurrent(1).build().unwrap();
    let layer = ShedLoadLayer::new(limit)
        .unwrap()
        .retry_after(wait)
        .configured()?;
    let mut server = layer.layer(tower::service_fn(|_: http::Request<()>| {
        std::future::pending::<Result<http::Response<()>, std::convert::Infallible>>()
    }));
    let _busy = server.call(request()); // holds the only permit
    let shed = poll_once(server.call(request())).expect("shed at once");
    Some(shed.unwrap())
}

/// The headers of the response of the chaos layer's status fault (503) when told to
/// send `Retry-After: wait`.
pub fn chaos_headers(wait: Duration) -> http::HeaderMap {
    use seawall::chaos::http::HttpFaultLayer;
    use tower::{Layer, ServiceExt};

    let server = HttpFaultLayer::builder()
        .rate(1.0)
        .status(503)
        .retry_after(wait)
        .enabled(true)
        .build()
        .unwrap()
        .layer(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        }));
    let response = block_on(server.oneshot(http::Request::new(()))).unwrap();
    assert_eq!(response.status(), 503);
    response.headers().clone()
}

/// What must hold of any policy file, loaded or refused: a config that loads builds the
/// policy of every name in it and of any other name (the defaults'); a refusal says
/// why, and where it says, it is inside the text (or just past its end).
pub fn check_loaded(
    text: &str,
    loaded: Result<seawall::policy::PolicyConfig, seawall::policy::ConfigFileError>,
) {
    match loaded {
        Ok(config) => {
            for name in config.names() {
                let _ = config.settings(name);
                if let Err(error) = config.policy(name) {
                    panic!("{name:?} loaded but does not build: {error}");
                }
            }
            if let Err(error) = config.policy("a name not in the file") {
                panic!("the defaults loaded but do not build: {error}");
            }
        }
        Err(error) => {
            assert!(!error.reason().trim().is_empty(), "no reason: {error:?}");
            assert!(!error.to_string().is_empty());
            if let Some(line) = error.line() {
                // YAML breaks lines at a lone `\r` too, and may place the end of the text
                // on a line after the last one.
                let breaks = text.matches('\n').count() + text.matches('\r').count();
                assert!(
                    line >= 1 && line <= breaks + 2,
                    "line {line} of {breaks} + 1: {error}"
                );
            }
        }
    }
}

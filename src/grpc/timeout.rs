//! `grpc-timeout`: the deadline a gRPC client gives its call, as `1-8 digits` and a unit
//! (`H`, `M`, `S`, `m`, `u`, `n`; PROTOCOL-HTTP2.md). A value that does not read is no
//! deadline (the call still has `upstream.response_timeout`): gRPC servers treat it so.

use std::time::Duration;

use http::HeaderValue;

pub const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// The deadline `value` gives, if it reads as one.
pub fn parse(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// `left` as a `grpc-timeout` value: in the finest unit whose count fits in 8 digits,
/// rounded up, so the deadline never reaches the model shorter than moat's own.
pub fn format(left: Duration) -> HeaderValue {
    let nanos = left.as_nanos();
    let value = [
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
    ]
    .into_iter()
    .map(|(per, unit)| (nanos.div_ceil(per), unit))
    .find(|(count, _)| *count < MAX_COUNT)
    .unwrap_or((nanos.div_ceil(3_600_000_000_000).min(MAX_COUNT - 1), 'H'));
    HeaderValue::from_str(&format!("{}{}", value.0, value.1))
        .unwrap_or(HeaderValue::from_static("99999999H"))
}

/// gRPC's timeout counts have at most 8 digits.
const MAX_COUNT: u128 = 100_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_reads_and_bad_values_are_no_deadline() {
        let read = |text: &'static str| parse(&HeaderValue::from_static(text));
        assert_eq!(read("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(read("2M"), Some(Duration::from_secs(120)));
        assert_eq!(read("3S"), Some(Duration::from_secs(3)));
        assert_eq!(read("250m"), Some(Duration::from_millis(250)));
        assert_eq!(read("7u"), Some(Duration::from_micros(7)));
        assert_eq!(read("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "123456789S", "1x", "-1S", "1.5S", "1 S"] {
            assert_eq!(read(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_forwarded_budget_rounds_up() {
        assert_eq!(format(Duration::from_micros(1500)), "2m");
        assert_eq!(format(Duration::from_secs(2)), "2000m");
        assert_eq!(format(Duration::from_secs(200_000)), "200000S");
        assert_eq!(format(Duration::from_secs(359_999_996_400)), "99999999H");
        assert_eq!(format(Duration::from_secs(100_000_000)), "1666667M");
    }
}

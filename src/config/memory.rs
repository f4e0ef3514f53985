//! The memory limit of the container moat runs in, as its cgroup states it: what the
//! default of `limits.max_buffered_body_bytes` is derived from.

/// The cgroup's memory limit in bytes; `None` when there is none (or no cgroup to read).
pub fn limit() -> Option<u64> {
    // cgroup v2, then v1; v1 writes "no limit" as a huge number near i64::MAX.
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|path| parse(&std::fs::read_to_string(path).ok()?))
}

fn parse(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|bytes| *bytes > 0 && *bytes < 1 << 60)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn max_and_huge_values_mean_no_limit() {
        assert_eq!(parse("536870912\n"), Some(512 * 1024 * 1024));
        assert_eq!(parse("max\n"), None);
        assert_eq!(parse("9223372036854771712"), None);
    }
}

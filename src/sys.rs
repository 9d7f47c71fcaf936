//! The process's open-file limit, which the standard library cannot read or
//! raise: every connection holds a file descriptor, so the connection cap
//! is derived from it.

/// Raises the soft open-file limit to the hard one (as the Go runtime does:
/// the soft default of 1,024 is a relic of `select`) and returns the limit
/// now in force, or `None` where it cannot be read.
#[cfg(unix)]
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    // rlim_t is u64 on Linux, but not on every unix.
    #[allow(clippy::useless_conversion)]
    Some(u64::try_from(limit.rlim_cur).unwrap_or(u64::MAX))
}

#[cfg(not(unix))]
pub fn raise_open_files_limit() -> Option<u64> {
    None
}

/// The connection cap for an open-file limit: three quarters of it, the
/// rest kept for database connections, SQLite files and logs.
pub fn connection_cap(open_files: Option<u64>) -> usize {
    let open_files = open_files.unwrap_or(1024).min(1 << 20);
    usize::try_from(open_files / 4 * 3).unwrap_or(usize::MAX).max(64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_a_quarter_of_the_descriptors() {
        assert_eq!(connection_cap(Some(1024)), 768);
        assert_eq!(connection_cap(None), 768);
        assert_eq!(connection_cap(Some(u64::MAX)), (1 << 20) / 4 * 3);
        assert_eq!(connection_cap(Some(16)), 64, "never below a workable minimum");
    }

    #[test]
    fn the_limit_is_readable_here() {
        assert!(raise_open_files_limit().is_some_and(|limit| limit >= 64));
    }
}

//! The file-descriptor budget: `server.max_connections` must fit in the
//! process's open-file limit (`RLIMIT_NOFILE`), else a flood of connections
//! would run the process out of descriptors (failed accepts, and no socket
//! left for Redis) before the cap ever applies. At start-up the soft limit is
//! raised as far as needed (never past the hard limit, which only the
//! operator can raise); if even the hard limit is too low, start-up stops.

/// Descriptors kept beside client connections: the listener, the Redis pool,
/// the runtime's own (epoll, eventfd), stdio, files read at start-up.
pub const RESERVED_FDS: u64 = 128;

#[derive(Debug, thiserror::Error)]
pub enum FdLimitError {
    #[error(
        "server.max_connections: {connections} connections need about {needed} open files, \
         but the hard limit (RLIMIT_NOFILE) is {hard}; lower server.max_connections or raise \
         the limit (ulimit -n, systemd LimitNOFILE=, docker --ulimit nofile=)"
    )]
    TooLow {
        connections: usize,
        needed: u64,
        hard: u64,
    },
    #[error("server.max_connections: cannot read or raise the open-file limit: {0}")]
    Os(#[from] std::io::Error),
}

/// What was done about the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdLimit {
    /// The soft limit already fits.
    Fits { soft: u64 },
    /// The soft limit was raised from `from` to `to`.
    Raised { from: u64, to: u64 },
}

/// The soft limit to set (`Some`) or `None` if `soft` fits already.
pub fn plan(connections: usize, soft: u64, hard: u64) -> Result<Option<u64>, FdLimitError> {
    let needed = u64::try_from(connections)
        .unwrap_or(u64::MAX)
        .saturating_add(RESERVED_FDS);
    if needed <= soft {
        Ok(None)
    } else if needed <= hard {
        Ok(Some(needed))
    } else {
        Err(FdLimitError::TooLow {
            connections,
            needed,
            hard,
        })
    }
}

/// Makes room for `connections` sockets under the soft limit, raising it if
/// needed and allowed.
#[cfg(unix)]
pub fn ensure(connections: usize) -> Result<FdLimit, FdLimitError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let (soft, hard) = (limit.rlim_cur, limit.rlim_max);
    let Some(to) = plan(connections, soft, hard)? else {
        return Ok(FdLimit::Fits { soft });
    };
    limit.rlim_cur = to;
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(FdLimit::Raised { from: soft, to })
}

#[cfg(not(unix))]
pub fn ensure(_connections: usize) -> Result<FdLimit, FdLimitError> {
    Ok(FdLimit::Fits { soft: u64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_only_as_far_as_needed() {
        assert_eq!(plan(4096, 1 << 20, 1 << 20).unwrap(), None);
        assert_eq!(
            plan(4096, 1024, 1 << 20).unwrap(),
            Some(4096 + RESERVED_FDS)
        );
        assert_eq!(plan(1000, 1024, 4096).unwrap(), Some(1000 + RESERVED_FDS));
    }

    #[test]
    fn a_hard_limit_below_the_cap_is_one_line_naming_the_key() {
        let e = plan(4096, 1024, 4096).unwrap_err().to_string();
        assert!(e.starts_with("server.max_connections: "), "{e}");
        assert!(e.contains("4224") && e.contains("4096"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn this_process_fits_a_small_cap() {
        assert!(ensure(16).is_ok());
    }
}

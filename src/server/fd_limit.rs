//! The file-descriptor budget: every listener's connection cap
//! (`server.max_connections`, and `grpc.max_connections` while gRPC is on)
//! must fit in the process's open-file limit (`RLIMIT_NOFILE`) together,
//! else a flood on one listener would run the process out of descriptors
//! (failed accepts on every listener, and no socket left for Redis) before
//! its cap ever applies. At start-up the soft limit is raised as far as
//! needed (never past the hard limit, which only the operator can raise);
//! if even the hard limit is too low, start-up stops naming the keys.

/// Descriptors kept beside client connections: the listeners, the Redis pool,
/// the runtime's own (epoll, eventfd), stdio, files read at start-up.
pub const RESERVED_FDS: u64 = 128;

/// One listener's cap: the key that sets it and its value.
pub type Cap = (&'static str, usize);

#[derive(Debug, thiserror::Error)]
pub enum FdLimitError {
    #[error(
        "{keys}: {connections} connections need about {needed} open files, \
         but the hard limit (RLIMIT_NOFILE) is {hard}; lower {keys} or raise \
         the limit (ulimit -n, systemd LimitNOFILE=, docker --ulimit nofile=)"
    )]
    TooLow {
        keys: String,
        connections: usize,
        needed: u64,
        hard: u64,
    },
    #[error("{keys}: cannot read or raise the open-file limit: {source}")]
    Os {
        keys: String,
        source: std::io::Error,
    },
}

/// What was done about the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdLimit {
    /// The soft limit already fits.
    Fits { soft: u64 },
    /// The soft limit was raised from `from` to `to`.
    Raised { from: u64, to: u64 },
}

/// The caps' keys as one name, e.g. `server.max_connections + grpc.max_connections`.
pub fn keys(caps: &[Cap]) -> String {
    caps.iter()
        .map(|(key, _)| *key)
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The soft limit to set (`Some`) or `None` if `soft` fits already.
pub fn plan(caps: &[Cap], soft: u64, hard: u64) -> Result<Option<u64>, FdLimitError> {
    let connections = caps
        .iter()
        .fold(0usize, |sum, (_, n)| sum.saturating_add(*n));
    let needed = u64::try_from(connections)
        .unwrap_or(u64::MAX)
        .saturating_add(RESERVED_FDS);
    if needed <= soft {
        Ok(None)
    } else if needed <= hard {
        Ok(Some(needed))
    } else {
        Err(FdLimitError::TooLow {
            keys: keys(caps),
            connections,
            needed,
            hard,
        })
    }
}

/// Makes room for every cap in `caps` under the soft limit, raising it if
/// needed and allowed.
#[cfg(unix)]
pub fn ensure(caps: &[Cap]) -> Result<FdLimit, FdLimitError> {
    let os = |source| FdLimitError::Os {
        keys: keys(caps),
        source,
    };
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(os(std::io::Error::last_os_error()));
    }
    let (soft, hard) = (limit.rlim_cur, limit.rlim_max);
    let Some(to) = plan(caps, soft, hard)? else {
        return Ok(FdLimit::Fits { soft });
    };
    limit.rlim_cur = to;
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(os(std::io::Error::last_os_error()));
    }
    Ok(FdLimit::Raised { from: soft, to })
}

#[cfg(not(unix))]
pub fn ensure(_caps: &[Cap]) -> Result<FdLimit, FdLimitError> {
    Ok(FdLimit::Fits { soft: u64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTTP: Cap = ("server.max_connections", 4096);
    const GRPC: Cap = ("grpc.max_connections", 1024);

    #[test]
    fn the_soft_limit_is_raised_only_as_far_as_needed() {
        assert_eq!(plan(&[HTTP], 1 << 20, 1 << 20).unwrap(), None);
        assert_eq!(
            plan(&[HTTP], 1024, 1 << 20).unwrap(),
            Some(4096 + RESERVED_FDS)
        );
        let small = ("server.max_connections", 1000);
        assert_eq!(
            plan(&[small], 1024, 4096).unwrap(),
            Some(1000 + RESERVED_FDS)
        );
    }

    #[test]
    fn every_listener_counts_against_one_budget() {
        assert_eq!(
            plan(&[HTTP, GRPC], 1024, 1 << 20).unwrap(),
            Some(4096 + 1024 + RESERVED_FDS)
        );
        // Room for HTTP alone is not room for both.
        assert!(plan(&[HTTP], 1024, 5000).unwrap().is_some());
        assert!(plan(&[HTTP, GRPC], 1024, 5000).is_err());
    }

    #[test]
    fn a_hard_limit_below_the_caps_is_one_line_naming_the_keys() {
        let e = plan(&[HTTP], 1024, 4096).unwrap_err().to_string();
        assert!(e.starts_with("server.max_connections: "), "{e}");
        assert!(e.contains("4224") && e.contains("4096"), "{e}");
        assert!(!e.contains('\n'));
        let e = plan(&[HTTP, GRPC], 1024, 5000).unwrap_err().to_string();
        assert!(
            e.starts_with("server.max_connections + grpc.max_connections: 5120 connections"),
            "{e}"
        );
        assert!(e.contains("5248") && e.contains("5000"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn this_process_fits_small_caps() {
        assert!(ensure(&[("server.max_connections", 16), ("grpc.max_connections", 16)]).is_ok());
    }
}

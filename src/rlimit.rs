//! The open-file limit. Every client and every backend connection is a file
//! descriptor, and the usual soft limit (1024) is far below what a proxy
//! with thousands of clients needs; the hard limit is what the operator
//! (`ulimit -Hn`, systemd `LimitNOFILE=`, a container's `--ulimit nofile=`)
//! allows, and raising the soft limit up to it needs no privilege.

/// The soft limit before and after [`raise_open_files`], and the hard limit
/// (an unlimited one given as the most the soft limit was raised to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    pub before: u64,
    pub now: u64,
    pub hard: u64,
}

/// Linux refuses a soft limit above `fs.nr_open` (1,048,576 by default),
/// which an unlimited hard limit would ask for.
#[cfg(unix)]
const UNLIMITED_CAP: libc::rlim_t = 1 << 20;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit.
#[cfg(unix)]
pub fn raise_open_files() -> std::io::Result<OpenFiles> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    let hard = if limit.rlim_max == libc::RLIM_INFINITY {
        UNLIMITED_CAP
    } else {
        limit.rlim_max
    };
    if before < hard {
        limit.rlim_cur = hard;
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[allow(clippy::useless_conversion, reason = "rlim_t is i64 on some BSDs")]
    let wide = |n: libc::rlim_t| u64::try_from(n).unwrap_or(0);
    Ok(OpenFiles {
        before: wide(before),
        now: wide(before.max(hard)),
        hard: wide(hard),
    })
}

#[cfg(not(unix))]
pub fn raise_open_files() -> std::io::Result<OpenFiles> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "no RLIMIT_NOFILE on this platform",
    ))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn soft_limit_reaches_the_hard_limit() {
        let limits = raise_open_files().expect("getrlimit/setrlimit");
        assert_eq!(limits.now, limits.before.max(limits.hard));
        // Idempotent: a second call finds the limit already raised.
        assert_eq!(raise_open_files().expect("again").before, limits.now);
    }
}

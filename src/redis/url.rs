//! `redis://[[user]:password@]host[:port][/db]` and `rediss://` (TLS), as
//! in the IANA registration of the redis URI scheme.

use super::RedisError;

pub const DEFAULT_PORT: u16 = 6379;

/// What a Redis URL names.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub user: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

impl Endpoint {
    /// `host:port (tls)`, without credentials; IPv6 hosts in brackets.
    pub fn describe(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let tls = if self.tls { " (tls)" } else { "" };
        format!("{host}:{}{tls}", self.port)
    }
}

/// Never shows the password, so an endpoint can be logged with `{:?}`.
impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} db {}", self.describe(), self.db)
    }
}

fn invalid(problem: impl std::fmt::Display) -> RedisError {
    RedisError::Url(problem.to_string())
}

pub fn parse(url: &str) -> Result<Endpoint, RedisError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("expected redis://host[:port][/db] or rediss://…"))?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "redis" => false,
        "rediss" => true,
        other => return Err(invalid(format!("scheme {other:?} is not redis or rediss"))),
    };
    // The last '@' ends the credentials, so a password may hold '@' or '/'
    // unencoded (Azure access keys are base64, with '/' and '+').
    let (userinfo, location) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    if location.contains(['?', '#']) {
        return Err(invalid("query parameters and fragments are not supported"));
    }
    let (user, password) = credentials(userinfo)?;
    let (authority, path) = location.split_once('/').unwrap_or((location, ""));
    let (host, port) = host_and_port(authority)?;
    Ok(Endpoint {
        host,
        port,
        tls,
        user,
        password,
        db: database(path)?,
    })
}

type Credentials = (Option<String>, Option<String>);

/// `[user]:password`, percent-decoded; empty parts are absent.
fn credentials(userinfo: Option<&str>) -> Result<Credentials, RedisError> {
    let Some(userinfo) = userinfo else {
        return Ok((None, None));
    };
    let (user, password) = userinfo.split_once(':').ok_or_else(|| {
        invalid("credentials must be user:password or :password (the password follows a colon)")
    })?;
    let non_empty = |s: &str| -> Result<Option<String>, RedisError> {
        Ok(Some(percent_decode(s)?).filter(|s| !s.is_empty()))
    };
    Ok((non_empty(user)?, non_empty(password)?))
}

fn percent_decode(s: &str) -> Result<String, RedisError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let byte = bytes
            .get(i + 1..i + 3)
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .ok_or_else(|| invalid("a '%' in the credentials is not followed by two hex digits"))?;
        out.push(byte);
        i += 3;
    }
    String::from_utf8(out).map_err(|_| invalid("percent-decoded credentials are not UTF-8"))
}

fn host_and_port(authority: &str) -> Result<(String, u16), RedisError> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid("IPv6 address without its closing ']'"))?;
        let port =
            match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| {
                    invalid(format!("unexpected {after:?} after the IPv6 address"))
                })?),
            };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| invalid(format!("port {port:?} is not 1 to 65535")))?,
    };
    Ok((host.to_string(), port))
}

fn database(path: &str) -> Result<u32, RedisError> {
    if path.is_empty() {
        return Ok(0);
    }
    if !path.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!("database {path:?} is not a number")));
    }
    path.parse()
        .map_err(|_| invalid(format!("database {path:?} is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Endpoint {
        parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn problem(url: &str) -> String {
        match parse(url) {
            Err(RedisError::Url(problem)) => problem,
            other => panic!("{url}: expected a URL error, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let e = endpoint("redis://cache");
        assert_eq!(
            (e.host.as_str(), e.port, e.tls, e.db),
            ("cache", 6379, false, 0)
        );
        assert_eq!((e.user, e.password), (None, None));
        assert_eq!(endpoint("redis://cache/").db, 0);
    }

    #[test]
    fn every_part() {
        let e = endpoint("rediss://me:p%40ss@cache.redis.cache.windows.net:6380/3");
        assert!(e.tls);
        assert_eq!(e.host, "cache.redis.cache.windows.net");
        assert_eq!(e.port, 6380);
        assert_eq!(e.db, 3);
        assert_eq!(e.user.as_deref(), Some("me"));
        assert_eq!(e.password.as_deref(), Some("p@ss"));
        assert_eq!(e.describe(), "cache.redis.cache.windows.net:6380 (tls)");
    }

    #[test]
    fn password_only_and_raw_specials() {
        let e = endpoint("redis://:a/b+c=@10.0.0.1");
        assert_eq!((e.user, e.password.as_deref()), (None, Some("a/b+c=")));
        assert_eq!(e.host, "10.0.0.1");
        let e = endpoint("REDISS://:x@y@host:1");
        assert_eq!(
            (e.password.as_deref(), e.host.as_str(), e.tls),
            (Some("x@y"), "host", true)
        );
    }

    #[test]
    fn ipv6() {
        let e = endpoint("redis://[::1]:7000/1");
        assert_eq!((e.host.as_str(), e.port, e.db), ("::1", 7000, 1));
        assert_eq!(e.describe(), "[::1]:7000");
        assert_eq!(endpoint("redis://[::1]").port, 6379);
    }

    #[test]
    fn describe_and_debug_hide_the_password() {
        let e = endpoint("redis://u:hunter2@h");
        assert!(!e.describe().contains("hunter2"));
        assert!(!format!("{e:?}").contains("hunter2"));
    }

    #[test]
    fn rejected() {
        assert!(problem("cache:6379").contains("redis://"));
        assert!(problem("http://cache").contains("scheme"));
        assert!(problem("redis://").contains("no host"));
        assert!(problem("redis://:6379").contains("no host"));
        assert!(problem("redis://h:0").contains("port"));
        assert!(problem("redis://h:65536").contains("port"));
        assert!(problem("redis://h:x").contains("port"));
        assert!(problem("redis://h/x").contains("not a number"));
        assert!(problem("redis://h/-1").contains("not a number"));
        assert!(problem("redis://h/99999999999").contains("too large"));
        assert!(problem("redis://h?db=1").contains("query"));
        assert!(problem("redis://secret@h").contains("colon"));
        assert!(problem("redis://:%zz@h").contains("hex"));
        assert!(problem("redis://:%+1@h").contains("hex"));
        assert!(problem("redis://:%4@h").contains("hex"));
        assert!(problem("redis://:%ff@h").contains("UTF-8"));
        assert!(problem("redis://[::1").contains("']'"));
        assert!(problem("redis://[::1]x").contains("after the IPv6"));
        assert!(problem("redis://a:b:c").contains("port"));
    }

    #[test]
    fn rejected_urls_do_not_echo_the_password() {
        assert!(!problem("redis://:hunter2@h:x").contains("hunter2"));
    }
}

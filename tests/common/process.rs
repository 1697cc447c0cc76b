//! A proxy running as a child process for the benchmarks (`sluice`, or the
//! load benchmark's forwarder): readiness, its CPU time and resident memory
//! from `/proc`, its log on failure; killed when dropped, on a panic too.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ChildProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// What it runs, for messages.
    pub program: String,
    /// Where its output goes, if to a file.
    pub log: Option<PathBuf>,
    /// Under callgrind (see [`proxy_command`]): the file its dumps are
    /// named after.
    pub callgrind: Option<PathBuf>,
}

/// `SLUICE_BENCH_CALLGRIND=1`: the proxies run under valgrind's callgrind,
/// and a phase's cost is read as instructions executed, which repeat from
/// run to run whatever else the machine does (CPU time does not).
pub fn callgrind_requested() -> bool {
    std::env::var("SLUICE_BENCH_CALLGRIND").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The command that runs `program`: as it is, or under callgrind with its
/// instrumentation off (logins and start-up run at near full speed) and
/// its dumps written beside `dump` (`<dump>.<n>`).
pub fn proxy_command(program: &str, dump: &Path) -> (Command, Option<PathBuf>) {
    if !callgrind_requested() {
        return (Command::new(program), None);
    }
    let mut command = Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        .arg("--instr-atstart=no")
        .arg(format!("--callgrind-out-file={}", dump.display()))
        .arg(program);
    (command, Some(dump.to_path_buf()))
}

impl ChildProcess {
    /// The `sluice` binary with `config` written to `dir/proxy.toml`, its
    /// output to `dir/sluice.log`, listening on `addr`.
    pub fn sluice(dir: &Path, config: &str, addr: SocketAddr) -> ChildProcess {
        std::fs::create_dir_all(dir).expect("temp dir");
        let config_path = dir.join("proxy.toml");
        std::fs::write(&config_path, config).expect("write proxy.toml");
        let log = dir.join("sluice.log");
        let out = std::fs::File::create(&log).expect("log file");
        // `SLUICE_BENCH_BIN` runs another build (an A/B comparison).
        let program = std::env::var("SLUICE_BENCH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sluice").to_string());
        let (mut command, callgrind) = proxy_command(&program, &dir.join("callgrind.out"));
        let child = command
            .arg("--config")
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("start sluice");
        ChildProcess {
            child,
            addr,
            program,
            log: Some(log),
            callgrind,
        }
    }

    /// Under callgrind: counters zeroed and instrumentation on, so that
    /// [`ChildProcess::instructions_since_start`] counts from here.
    pub fn start_counting(&self) {
        if self.callgrind.is_some() {
            self.callgrind_control(&["--instr=on"]);
            self.callgrind_control(&["--zero"]);
        }
    }

    /// Under callgrind: the instructions it executed since
    /// [`ChildProcess::start_counting`] (its threads together), read from
    /// a dump; instrumentation is off again after.
    pub fn instructions_since_start(&self) -> Option<u64> {
        let dump = self.callgrind.as_ref()?;
        self.callgrind_control(&["--dump"]);
        self.callgrind_control(&["--instr=off"]);
        let newest = newest_dump(dump)?;
        let text = std::fs::read_to_string(&newest).ok()?;
        text.lines()
            .find_map(|line| {
                line.strip_prefix("summary:")
                    .or(line.strip_prefix("totals:"))
            })
            .and_then(|n| n.split_whitespace().next()?.parse().ok())
    }

    fn callgrind_control(&self, args: &[&str]) {
        let status = Command::new("callgrind_control")
            .args(args)
            .arg(self.pid().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run callgrind_control");
        assert!(status.success(), "callgrind_control {args:?} failed");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls until it accepts connections; panics with its log if it exits
    /// first or is not listening within 30 s.
    pub async fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!("{} exited ({status}):\n{}", self.program, self.log_tail());
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} is not listening on {} after 30 s:\n{}",
                self.program,
                self.addr,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last 40 lines of its log.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Some(mut file) = self.log.as_ref().and_then(|p| std::fs::File::open(p).ok()) {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Resident memory (VmRSS), KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid()).expect("VmRSS in /proc/<pid>/status")
    }

    /// User plus system CPU time so far, seconds: see [`cpu_seconds`].
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid())
    }
}

/// The CPU time `pid` has used, seconds: its process CPU-time clock
/// (`clock_getcpuclockid`, nanoseconds), which counts every thread it ever
/// ran, or, without it, utime + stime from `/proc/<pid>/stat` (in clock
/// ticks, 10 ms each: too coarse for a short phase). Summing the live
/// threads' `/proc/<pid>/task/*/schedstat` would lose the time of a thread
/// that exits mid-phase: a blocking-pool thread that checked passwords
/// leaves after 10 s idle, and took its CPU time out of the phase with it.
pub fn cpu_seconds(pid: u32) -> f64 {
    if let Some(ns) = cpu_clock_ns(pid) {
        return ns as f64 / 1e9;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // Fields after the parenthesised command name: state is field 3,
    // utime 14 and stime 15 (proc(5)).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / clock_ticks_per_second() as f64
}

/// The process CPU-time clock of `pid`, nanoseconds.
fn cpu_clock_ns(pid: u32) -> Option<u64> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid place for the clock id.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid place for the time.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    Some(u64::try_from(now.tv_sec).ok()? * 1_000_000_000 + u64::try_from(now.tv_nsec).ok()?)
}

/// The highest-numbered of the dumps `<dump>.<n>` callgrind wrote.
fn newest_dump(dump: &Path) -> Option<PathBuf> {
    let dir = dump.parent()?;
    let prefix = format!("{}.", dump.file_name()?.to_str()?);
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let n: u64 = name.strip_prefix(&prefix)?.parse().ok()?;
            Some((n, dir.join(name)))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, path)| path)
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The unit of `/proc/<pid>/stat` CPU times.
pub fn clock_ticks_per_second() -> i64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }
}

/// Resident memory (VmRSS) of `pid`, KiB (for a sampler thread).
pub fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

//! A plain TCP forwarder on io_uring, for the load bench
//! (`SLUICE_BENCH_FORWARDER=<this binary>`): it shows what a proxy would
//! save by trading epoll and one syscall per read and write for a ring.
//!
//! Shaped like the bench's tokio forwarder: as many threads as
//! `SLUICE_BENCH_WORKERS` says (0: one per core), each with its own ring and
//! accepting on the shared listener; the backend from `SLUICE_BENCH_FORWARD`;
//! one 64 KiB buffer per direction. When a recv completes, the send of its
//! bytes and the recv that refills the buffer go in as one linked pair, the
//! send's completion skipped unless it fails. Each wake-up submits what the
//! last one queued and waits in the same `io_uring_enter`: two syscalls per
//! round trip, where an epoll forwarder makes six (two each of recv, send
//! and `epoll_wait`).
use io_uring::{opcode, squeue, types, IoUring};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

const BUF: usize = 64 * 1024;
const ACCEPT: u64 = 0;
const RECV: u64 = 1; // + dir
const SEND: u64 = 3; // + dir

struct Pair {
    fds: [TcpStream; 2], // 0: client, 1: server
    bufs: [Box<[u8]>; 2],
    len: [usize; 2],
    in_flight: u32,
    closing: bool,
}

struct Worker {
    ring: IoUring,
    pairs: Vec<Option<Pair>>,
    free: Vec<usize>,
    listener: RawFd,
    backend: SocketAddr,
}

fn data(slot: usize, kind: u64) -> u64 {
    ((slot as u64) << 3) | kind
}

impl Worker {
    fn push(&mut self, e: squeue::Entry) {
        // SAFETY: every buffer an entry points at lives in a Pair that is
        // freed only once its in-flight count is back to zero.
        while unsafe { self.ring.submission().push(&e) }.is_err() {
            self.ring.submit().expect("submit");
        }
    }

    fn accept(&mut self) {
        let e = opcode::Accept::new(
            types::Fd(self.listener),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .build()
        .user_data(ACCEPT);
        self.push(e);
    }

    fn recv(&mut self, slot: usize, dir: usize) {
        let p = self.pairs[slot].as_mut().unwrap();
        p.in_flight += 1;
        let fd = p.fds[dir].as_raw_fd();
        let buf = p.bufs[dir].as_mut_ptr();
        let e = opcode::Recv::new(types::Fd(fd), buf, BUF as u32)
            .build()
            .user_data(data(slot, RECV + dir as u64));
        self.push(e);
    }

    /// The received bytes go out, and the recv that refills the buffer is
    /// linked behind the send: one submission, and the send's completion
    /// is skipped unless it fails (then the recv completes as cancelled).
    fn relay(&mut self, slot: usize, dir: usize) {
        let p = self.pairs[slot].as_mut().unwrap();
        let fd = p.fds[1 - dir].as_raw_fd();
        let buf = p.bufs[dir].as_ptr();
        let n = p.len[dir] as u32;
        let e = opcode::Send::new(types::Fd(fd), buf, n)
            .flags(libc::MSG_WAITALL)
            .build()
            .flags(squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS)
            .user_data(data(slot, SEND + dir as u64));
        self.push(e);
        self.recv(slot, dir);
    }

    fn opened(&mut self, client: RawFd) {
        use std::os::fd::FromRawFd;
        // SAFETY: the accept completion hands over a new descriptor.
        let client = unsafe { TcpStream::from_raw_fd(client) };
        // A blocking connect: the bench counts no CPU while clients log in.
        let Ok(server) = TcpStream::connect(self.backend) else {
            return;
        };
        client.set_nodelay(true).ok();
        server.set_nodelay(true).ok();
        let pair = Pair {
            fds: [client, server],
            bufs: [
                vec![0; BUF].into_boxed_slice(),
                vec![0; BUF].into_boxed_slice(),
            ],
            len: [0; 2],
            in_flight: 0,
            closing: false,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.pairs[s] = Some(pair);
                s
            }
            None => {
                self.pairs.push(Some(pair));
                self.pairs.len() - 1
            }
        };
        self.recv(slot, 0);
        self.recv(slot, 1);
    }

    fn close(&mut self, slot: usize) {
        let p = self.pairs[slot].as_mut().unwrap();
        if !p.closing {
            p.closing = true;
            for fd in &p.fds {
                fd.shutdown(std::net::Shutdown::Both).ok();
            }
        }
        if p.in_flight == 0 {
            self.pairs[slot] = None;
            self.free.push(slot);
        }
    }

    fn completed(&mut self, user_data: u64, res: i32) {
        if user_data == ACCEPT {
            if res >= 0 {
                self.opened(res);
            }
            self.accept();
            return;
        }
        let slot = (user_data >> 3) as usize;
        let kind = user_data & 7;
        let p = self.pairs[slot].as_mut().unwrap();
        if kind >= SEND {
            // Only a failed send completes; its linked recv completes too.
            self.close(slot);
            return;
        }
        p.in_flight -= 1;
        if p.closing || res <= 0 {
            self.close(slot);
            return;
        }
        let dir = (kind - RECV) as usize;
        p.len[dir] = res as usize;
        self.relay(slot, dir);
    }

    fn run(mut self) {
        self.accept();
        let mut done = Vec::with_capacity(256);
        loop {
            self.ring.submit_and_wait(1).expect("io_uring_enter");
            done.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
            for (u, r) in done.drain(..) {
                self.completed(u, r);
            }
        }
    }
}

fn main() {
    let backend: SocketAddr = std::env::var("SLUICE_BENCH_FORWARD")
        .expect("backend")
        .parse()
        .expect("addr");
    let threads = match std::env::var("SLUICE_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(0) | None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Some(n) => n,
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut out = std::io::stdout();
    writeln!(out, "{}", listener.local_addr().unwrap()).unwrap();
    out.flush().unwrap();
    let fd = listener.as_raw_fd();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                Worker {
                    ring: IoUring::new(4096).expect("io_uring"),
                    pairs: Vec::new(),
                    free: Vec::new(),
                    listener: fd,
                    backend,
                }
                .run()
            })
        })
        .collect();
    for h in handles {
        h.join().ok();
    }
    drop(listener);
}

//! The lab: two network namespaces made for one test, a client and a server, joined by
//! a veth pair (10.213.N.1 and 10.213.N.2), and the faults injected between them with
//! nftables and tc. Nothing is added to the namespace the tests run in: no address, no
//! route, no rule; every packet of a test stays on its own veth pair.

use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};

/// The port of the HTTP server (HTTP/1 and HTTP/2 cleartext), in the server namespace.
pub(crate) const HTTP_PORT: u16 = 8080;
/// The port of the gRPC server, in the server namespace.
pub(crate) const GRPC_PORT: u16 = 50051;
/// The veth end in each namespace (names are per namespace, so every lab has the same).
pub(crate) const VETH: &str = "veth0";

/// Labs made by this process, numbered for their names and their /30.
static NEXT: AtomicU8 = AtomicU8::new(1);

/// Two namespaces and the veth pair between them; deleted on drop, whatever happened.
#[derive(Debug)]
pub(crate) struct Lab {
    client: String,
    server: String,
    net: u8,
}

impl Lab {
    /// A lab for `case`, or `None` (the case is skipped, and says why) where this
    /// process cannot make one: not root, `ip`, `tc` or `nft` missing, no namespaces.
    /// Under CI (`CI` set) a missing prerequisite is a failure, not a skip: there the
    /// tests must run (`.ci/kernel-deps` installs the tools).
    pub(crate) fn new(case: &str) -> Option<Self> {
        if let Err(why) = prerequisites() {
            return skip(case, &why);
        }
        sweep_stale();
        let net = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let lab = Self {
            client: format!("swk{pid}-{net}-c"),
            server: format!("swk{pid}-{net}-s"),
            net,
        };
        // From here on `lab`'s drop deletes whatever was made.
        if let Err(why) = lab.build() {
            return skip(case, &format!("cannot make network namespaces: {why}"));
        }
        Some(lab)
    }

    fn build(&self) -> Result<(), String> {
        let (c, s) = (self.client.as_str(), self.server.as_str());
        run(&["ip", "netns", "add", c])?;
        run(&["ip", "netns", "add", s])?;
        // Each end is made inside its namespace: never in ours, not even for a moment.
        run(&[
            "ip", "link", "add", VETH, "netns", c, "type", "veth", "peer", "name", VETH, "netns", s,
        ])?;
        for (ns, ip) in [(c, self.client_ip()), (s, self.server_ip())] {
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/30"),
                "dev",
                VETH,
            ])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            run(&["ip", "-n", ns, "link", "set", VETH, "up"])?;
            // Segments of one MTU at the qdisc, so that shaping delays packets, not
            // 64 KiB super-packets.
            run(&["ip", "-n", ns, "link", "set", VETH, "gso_max_segs", "1"])?;
        }
        // `ct bytes` needs conntrack's accounting, a per-namespace switch (written with
        // `sh`, which every machine has; `sysctl` is procps's).
        self.exec(
            s,
            &[
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/netfilter/nf_conntrack_acct",
            ],
        )?;
        Ok(())
    }

    /// The client's address, on its end of the veth pair.
    pub(crate) fn client_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.net, 1)
    }

    /// The server's address, on its end of the veth pair.
    pub(crate) fn server_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.net, 2)
    }

    pub(crate) fn http_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.server_ip()), HTTP_PORT)
    }

    pub(crate) fn grpc_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.server_ip()), GRPC_PORT)
    }

    pub(crate) fn server_ns(&self) -> &str {
        &self.server
    }

    /// Load an nftables ruleset (`nft -f -`) in the server's namespace.
    pub(crate) fn nft_server(&self, rules: &str) {
        nft(&self.server, rules).unwrap_or_else(|why| panic!("nft in {}: {why}", self.server));
    }

    /// Load an nftables ruleset in the client's namespace.
    pub(crate) fn nft_client(&self, rules: &str) {
        nft(&self.client, rules).unwrap_or_else(|why| panic!("nft in {}: {why}", self.client));
    }

    /// Packets counted by every `counter` of the ruleset of both namespaces: how often
    /// the injected fault struck.
    pub(crate) fn fault_packets(&self) -> u64 {
        [&self.client, &self.server]
            .into_iter()
            .map(|ns| {
                let listing = self
                    .exec(ns, &["nft", "list", "ruleset"])
                    .unwrap_or_default();
                listing
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .filter(|w| w[0] == "packets")
                    .filter_map(|w| w[1].parse::<u64>().ok())
                    .sum::<u64>()
            })
            .sum()
    }

    /// Remove every fault: both rulesets flushed, the server's qdisc back to the default.
    pub(crate) fn clear_faults(&self) {
        for ns in [&self.client, &self.server] {
            self.exec(ns, &["nft", "flush", "ruleset"])
                .unwrap_or_else(|why| panic!("nft flush in {ns}: {why}"));
        }
        // Nothing to delete is not an error here.
        let _ = run(&[
            "tc",
            "-n",
            &self.server,
            "qdisc",
            "del",
            "dev",
            VETH,
            "root",
        ]);
    }

    /// Run `tc` with `args` in the server's namespace.
    pub(crate) fn tc_server(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["tc", "-n", self.server.as_str()];
        all.extend_from_slice(args);
        run(&all)
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["ip", "netns", "exec", ns];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Run `test` to its end on a thread of its own inside the client's namespace, on a
    /// current-thread runtime (so every socket it makes is made there). A panic in it is
    /// this thread's panic.
    pub(crate) fn client<F, Fut>(&self, test: F) -> Fut::Output
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future,
        Fut::Output: Send,
    {
        let ns = self.client.as_str();
        std::thread::scope(|scope| {
            let thread = scope.spawn(move || {
                enter(ns).unwrap_or_else(|why| panic!("setns into {ns}: {why}"));
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(test())
            });
            match thread.join() {
                Ok(output) => output,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The veth pair goes with its namespaces; sockets still open keep a namespace
        // alive until they close, but not its name.
        for ns in [&self.client, &self.server] {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

/// Move this thread into the network namespace `ns` (`setns(2)`, through rustix's safe
/// wrapper). Only this thread moves; sockets it makes from now on live in `ns`.
pub(crate) fn enter(ns: &str) -> std::io::Result<()> {
    let file = File::open(format!("/var/run/netns/{ns}"))?;
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )?;
    Ok(())
}

fn skip(case: &str, why: &str) -> Option<Lab> {
    if std::env::var_os("CI").is_some() {
        panic!("kernel_faults::{case} cannot run under CI: {why} (run .ci/kernel-deps as root)");
    }
    say(&format!("kernel_faults::{case}: skipped: {why}"));
    None
}

/// A line on stderr that the test harness does not capture: a skip must be seen.
pub(crate) fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn prerequisites() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        return Err(format!("not root (effective uid {euid})"));
    }
    for (tool, arg) in [("ip", "-V"), ("tc", "-V"), ("nft", "--version")] {
        run(&[tool, arg]).map_err(|why| format!("`{tool}` is missing: {why}"))?;
    }
    Ok(())
}

/// Delete the namespaces of earlier runs of this binary that died before their drop
/// (killed), recognised by the pid in their names.
fn sweep_stale() {
    let Ok(list) = run(&["ip", "netns", "list"]) else {
        return;
    };
    for name in list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        let Some(pid) = name
            .strip_prefix("swk")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run(&["ip", "netns", "del", name]);
        }
    }
}

fn nft(ns: &str, rules: &str) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(rules.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}\n{rules}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Run a command; its stdout, or why it failed.
pub(crate) fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

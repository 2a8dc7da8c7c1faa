//! Log lines in the style of real system logs — web server access logs, HDFS, OpenSSH,
//! the Linux kernel, and application logs — each drawn from a known **template** (the
//! constant text with `<*>` where a variable goes: addresses, ports, block ids, paths,
//! user names, numbers, durations, hex ids). The template of every line is returned, so
//! search can be tested on realistic text and log-pattern mining measured against the
//! ground truth.
//!
//! Templates are drawn with skewed weights (a few are most of the volume, some are rare),
//! as in real logs.
//!
//! ```
//! use scrydb_workload::{Rng, logtext};
//! let mut rng = Rng::new(7);
//! let line = logtext::line(&mut rng);
//! assert!(line.template < logtext::TEMPLATES.len());
//! assert!(!line.text.is_empty());
//! ```

use crate::Rng;

/// The ground-truth templates: `<*>` marks each variable.
pub const TEMPLATES: &[&str] = &[
    // web server (combined access log)
    r#"<*> - - "GET <*> HTTP/1.1" <*> <*> "-" "Mozilla/5.0 (X11; Linux x86_64)""#,
    r#"<*> - - "POST <*> HTTP/1.1" <*> <*> "-" "curl/8.5.0""#,
    "upstream timed out (110: Connection timed out) while reading response header from upstream, client: <*>, server: shop, request: \"GET <*> HTTP/1.1\", upstream: \"http://<*>/\"",
    // HDFS DataNode / NameNode
    "Receiving block <*> src: /<*> dest: /<*>",
    "PacketResponder <*> for block <*> terminating",
    "Received block <*> of size <*> from /<*>",
    "BLOCK* NameSystem.addStoredBlock: blockMap updated: <*> is added to <*> size <*>",
    "Verification succeeded for <*>",
    "Deleting block <*> file <*>",
    // OpenSSH
    "Accepted publickey for <*> from <*> port <*> ssh2: RSA SHA256:<*>",
    "Failed password for invalid user <*> from <*> port <*> ssh2",
    "Connection closed by authenticating user <*> <*> port <*> [preauth]",
    "pam_unix(sshd:session): session opened for user <*> by (uid=0)",
    // Linux kernel
    "Out of memory: Killed process <*> (<*>) total-vm:<*>kB, anon-rss:<*>kB, file-rss:0kB",
    "EXT4-fs error (device <*>): ext4_find_entry:1455: inode #<*>: comm <*>: reading directory lblock 0",
    "TCP: request_sock_TCP: Possible SYN flooding on port <*>. Sending cookies.",
    "nvme nvme0: I/O <*> QID <*> timeout, aborting",
    // application
    "dial tcp <*>: connect: connection refused",
    "write <*>: no space left on device",
    "order <*> placed by customer <*> total <*> EUR",
    "payment authorization declined for card ending <*>: insufficient funds",
    "cache miss for key <*>, loading from database took <*> ms",
    "request <*> completed in <*> ms with status <*>",
    "retrying call to <*> after <*> ms (attempt <*> of 5)",
];

/// Relative weight of each template (same order as [`TEMPLATES`]).
const WEIGHTS: &[u32] = &[
    300, 60, 4, 120, 120, 110, 100, 30, 20, 25, 40, 30, 25, 1, 2, 2, 3, 6, 2, 40, 5, 80, 250, 15,
];

/// One generated line and the index of its template in [`TEMPLATES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Index into [`TEMPLATES`].
    pub template: usize,
    /// The log line.
    pub text: String,
}

const USERS: &[&str] = &[
    "root", "admin", "deploy", "git", "ubuntu", "oracle", "test", "postgres", "alice", "bob",
];
const PATHS: &[&str] = &[
    "/",
    "/cart",
    "/checkout",
    "/api/v1/products",
    "/api/v1/orders",
    "/static/app.js",
    "/images/logo.png",
    "/login",
    "/search",
    "/health",
];
const COMMANDS: &[&str] = &[
    "java", "python3", "postgres", "nginx", "node", "ls", "rsync",
];
const SERVICES: &[&str] = &["payments", "inventory", "shipping", "accounts", "search"];

fn ip(rng: &mut Rng) -> String {
    format!(
        "10.{}.{}.{}",
        rng.below(4),
        rng.below(256),
        1 + rng.below(254)
    )
}

fn block(rng: &mut Rng) -> String {
    let v = rng.next_u64() as i64;
    format!("blk_{v}")
}

fn hex(rng: &mut Rng, n: usize) -> String {
    let mut s = String::with_capacity(n);
    while s.len() < n {
        s.push_str(&format!("{:016x}", rng.next_u64()));
    }
    s.truncate(n);
    s
}

/// Draws one line.
pub fn line(rng: &mut Rng) -> Line {
    let total: u64 = WEIGHTS.iter().map(|&w| u64::from(w)).sum();
    let mut pick = rng.below(total);
    let mut template = 0;
    for (i, &w) in WEIGHTS.iter().enumerate() {
        if pick < u64::from(w) {
            template = i;
            break;
        }
        pick -= u64::from(w);
    }
    let r = rng;
    let text = match template {
        0 => format!(
            r#"{} - - "GET {} HTTP/1.1" {} {} "-" "Mozilla/5.0 (X11; Linux x86_64)""#,
            ip(r),
            r.pick(PATHS),
            [200, 200, 200, 304, 404, 500][r.below(6) as usize],
            r.below(50_000)
        ),
        1 => format!(
            r#"{} - - "POST {} HTTP/1.1" {} {} "-" "curl/8.5.0""#,
            ip(r),
            r.pick(PATHS),
            [201, 200, 400, 502][r.below(4) as usize],
            r.below(5_000)
        ),
        2 => format!(
            "upstream timed out (110: Connection timed out) while reading response header from upstream, client: {}, server: shop, request: \"GET {} HTTP/1.1\", upstream: \"http://{}:8080/\"",
            ip(r),
            r.pick(PATHS),
            ip(r)
        ),
        3 => format!(
            "Receiving block {} src: /{}:{} dest: /{}:50010",
            block(r),
            ip(r),
            30_000 + r.below(30_000),
            ip(r)
        ),
        4 => format!(
            "PacketResponder {} for block {} terminating",
            r.below(3),
            block(r)
        ),
        5 => format!(
            "Received block {} of size {} from /{}",
            block(r),
            r.below(67_108_864),
            ip(r)
        ),
        6 => format!(
            "BLOCK* NameSystem.addStoredBlock: blockMap updated: {}:50010 is added to {} size {}",
            ip(r),
            block(r),
            r.below(67_108_864)
        ),
        7 => format!("Verification succeeded for {}", block(r)),
        8 => format!(
            "Deleting block {} file /data/dfs/current/finalized/subdir{}/{}",
            block(r),
            r.below(64),
            block(r)
        ),
        9 => format!(
            "Accepted publickey for {} from {} port {} ssh2: RSA SHA256:{}",
            r.pick(USERS),
            ip(r),
            1024 + r.below(64_000),
            hex(r, 43)
        ),
        10 => format!(
            "Failed password for invalid user {} from {} port {} ssh2",
            r.pick(USERS),
            ip(r),
            1024 + r.below(64_000)
        ),
        11 => format!(
            "Connection closed by authenticating user {} {} port {} [preauth]",
            r.pick(USERS),
            ip(r),
            1024 + r.below(64_000)
        ),
        12 => format!(
            "pam_unix(sshd:session): session opened for user {} by (uid=0)",
            r.pick(USERS)
        ),
        13 => format!(
            "Out of memory: Killed process {} ({}) total-vm:{}kB, anon-rss:{}kB, file-rss:0kB",
            1000 + r.below(60_000),
            r.pick(COMMANDS),
            r.below(16_000_000),
            r.below(8_000_000)
        ),
        14 => format!(
            "EXT4-fs error (device sd{}{}): ext4_find_entry:1455: inode #{}: comm {}: reading directory lblock 0",
            ["a", "b", "c"][r.below(3) as usize],
            1 + r.below(4),
            r.below(10_000_000),
            r.pick(COMMANDS)
        ),
        15 => format!(
            "TCP: request_sock_TCP: Possible SYN flooding on port {}. Sending cookies.",
            [80, 443, 8080, 22][r.below(4) as usize]
        ),
        16 => format!(
            "nvme nvme0: I/O {} QID {} timeout, aborting",
            r.below(1024),
            1 + r.below(8)
        ),
        17 => format!(
            "dial tcp {}:{}: connect: connection refused",
            ip(r),
            [5432, 6379, 9092, 8080][r.below(4) as usize]
        ),
        18 => format!(
            "write /var/lib/{}/{}.log: no space left on device",
            r.pick(SERVICES),
            hex(r, 8)
        ),
        19 => format!(
            "order {} placed by customer {} total {}.{:02} EUR",
            100_000 + r.below(900_000),
            r.below(50_000),
            r.below(500),
            r.below(100)
        ),
        20 => format!(
            "payment authorization declined for card ending {:04}: insufficient funds",
            r.below(10_000)
        ),
        21 => format!(
            "cache miss for key product:{}, loading from database took {} ms",
            r.below(20_000),
            r.below(300)
        ),
        22 => format!(
            "request {} completed in {} ms with status {}",
            hex(r, 16),
            r.below(2_000),
            [200, 200, 200, 201, 404, 500][r.below(6) as usize]
        ),
        _ => format!(
            "retrying call to {} after {} ms (attempt {} of 5)",
            r.pick(SERVICES),
            100 * (1 + r.below(10)),
            1 + r.below(4)
        ),
    };
    Line { template, text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_drawn_and_lines_fit_their_template() {
        assert_eq!(TEMPLATES.len(), WEIGHTS.len());
        let mut rng = Rng::new(1);
        let mut seen = vec![0usize; TEMPLATES.len()];
        for _ in 0..20_000 {
            let l = line(&mut rng);
            seen[l.template] += 1;
            // The constant words of the template appear in the line, in order.
            let mut rest = l.text.as_str();
            for part in TEMPLATES[l.template].split("<*>") {
                let at = rest.find(part).unwrap_or_else(|| {
                    panic!("{:?} lacks {part:?} ({})", l.text, TEMPLATES[l.template])
                });
                rest = &rest[at + part.len()..];
            }
        }
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
    }
}

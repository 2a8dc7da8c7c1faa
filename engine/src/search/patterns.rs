//! Log patterns: log bodies grouped into **templates** — the constant words of a line with
//! `<*>` where a variable goes (`dial tcp <*>: connect: connection refused`).
//!
//! The miner is a Drain-style online parser (He et al., "Drain: An Online Log Parsing
//! Approach with Fixed Depth Tree", ICWS 2017), per service:
//!
//! 1. **Tokens.** A body is split on whitespace; at most [`MAX_TOKENS`] tokens count (the
//!    rest of a longer line becomes one final `<*>`). A token holding an ASCII digit is
//!    **masked**: its leading punctuation (`( [ { " ' / # <`), a digit-free key prefix
//!    ending in `=` or `:` (`port=`, `total-vm:`) and its trailing punctuation
//!    (`) ] } " ' , : ; .`) are kept and the rest becomes `<*>` — so `(uid=0)` is
//!    `(uid=<*>)`, `/10.1.2.3:50010` is `/<*>` and `blk_-4023` is `<*>`. Ids, numbers,
//!    addresses, sizes and durations therefore never split a template. The exception is a
//!    rest of two or more ASCII letters then one or two digits (`ssh2`, `nvme0:`, `ext4`),
//!    kept as a word.
//! 2. **Routing.** Lines go to a leaf by (service, token count, first token); a first token
//!    containing `<*>`, or any first token once a (service, count) already has
//!    [`MAX_CHILDREN`] of them, routes as `<*>`.
//! 3. **Matching.** In its leaf, a line joins the template with the most positions equal
//!    to its tokens (ties: the older template), if at least [`SIMILARITY`] of the positions are
//!    equal; positions where they differ become `<*>`. A `<*>` of the template equals a
//!    `<*>` of the line (a masked token), never a word. Otherwise the line starts a new
//!    template.
//!
//! A template only ever generalises, so a line stays a member of the template it joined.
//! Each segment's miner starts empty: the same kind of line can be a more or a less general
//! template in different segments. [`Merger`] reconciles them when a query reads many
//! segments: it runs the same routing and matching over the segments' templates (`<*>`
//! equals only `<*>`), and a template that matches nothing under its first word also tries
//! those whose first word is `<*>` — one miner may have generalised a first word (past
//! [`MAX_CHILDREN`]) that another kept.
//!
//! A miner starts at most [`MAX_TEMPLATES`] templates; later lines that would start a new
//! one join the catch-all template `<*>` of their service instead (one more template per
//! service).

use std::collections::HashMap;

/// Tokens of a body that count; the rest of a longer body becomes one `<*>`.
pub const MAX_TOKENS: usize = 100;
/// Bytes of a body that count (cut at a char boundary) before it is split into tokens.
pub const MAX_BODY_BYTES: usize = 4096;
/// Share of equal positions a line needs to join a template.
pub const SIMILARITY: f64 = 0.4;
/// First tokens routed separately per (service, token count); beyond, they route as `<*>`.
pub const MAX_CHILDREN: usize = 100;
/// Templates one miner starts at most (then one catch-all per service).
pub const MAX_TEMPLATES: usize = 50_000;
/// The variable marker in templates.
pub const WILDCARD: &str = "<*>";

fn hash(token: &str) -> u64 {
    super::index::fx_hash(token.as_bytes())
}

const LEAD: &[u8] = b"([{\"'/#<";
const TRAIL: &[u8] = b")]}\"',:;.";

/// Appends the masked form of `token` (rule 1 of the module docs) to `out`.
fn mask_token(token: &str, out: &mut String) {
    let b = token.as_bytes();
    if !b.iter().any(u8::is_ascii_digit) {
        out.push_str(token);
        return;
    }
    let mut s = 0;
    while s < b.len() && LEAD.contains(&b[s]) {
        s += 1;
    }
    let mut e = b.len();
    while e > s && TRAIL.contains(&b[e - 1]) {
        e -= 1;
    }
    // The longest digit-free prefix of the core that ends in '=' or ':'.
    let mut key = s;
    for (i, &c) in b[s..e].iter().enumerate() {
        if c.is_ascii_digit() {
            break;
        }
        if c == b'=' || c == b':' {
            key = s + i + 1;
        }
    }
    // A name with a short version or unit number (`ssh2`, `nvme0`, `ext4`, `utf8`) is a
    // word, not a value.
    let value = &b[key..e];
    let letters = value.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    if letters >= 2
        && (1..=2).contains(&(value.len() - letters))
        && value[letters..].iter().all(u8::is_ascii_digit)
    {
        out.push_str(token);
        return;
    }
    // Every cut is at an ASCII byte, so a char boundary.
    out.push_str(&token[..key]);
    if key < e {
        out.push_str(WILDCARD);
    }
    out.push_str(&token[e..]);
}

/// The masked tokens of one body, in one buffer (no allocation per token).
#[derive(Debug, Default, Clone)]
pub struct Tokens {
    text: String,
    ends: Vec<u32>,
}

impl Tokens {
    /// Splits and masks `body` (rules 1 of the module docs), replacing what `self` held.
    pub fn parse(&mut self, body: &str) {
        self.text.clear();
        self.ends.clear();
        let mut cut = body.len().min(MAX_BODY_BYTES);
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut words = body[..cut].split_whitespace().peekable();
        while let Some(w) = words.next() {
            if self.ends.len() == MAX_TOKENS - 1 && words.peek().is_some() {
                // The rest of the line (this word included) is one variable.
                self.text.push_str(WILDCARD);
                self.ends.push(self.text.len() as u32);
                return;
            }
            mask_token(w, &mut self.text);
            self.ends.push(self.text.len() as u32);
        }
    }

    /// Tokens from an already masked template (`<*>` and words separated by single spaces).
    pub fn of_template(&mut self, template: &str) {
        self.text.clear();
        self.ends.clear();
        for w in template.split(' ').filter(|w| !w.is_empty()) {
            self.text.push_str(w);
            self.ends.push(self.text.len() as u32);
        }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there is no token (an empty or blank body).
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Token `i`.
    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    /// Every token, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// One template: its tokens (`None` is a position that became a variable by matching).
#[derive(Debug, Clone)]
struct Template {
    service: u32,
    tokens: Vec<Option<Box<str>>>,
}

impl Template {
    /// Equal positions with `line`: the same word, or a variable (`None`) where the line
    /// has `<*>` too. A variable never equals a word: that would let a general template
    /// absorb every line of its length.
    fn equal_positions(&self, line: &Tokens) -> usize {
        self.tokens
            .iter()
            .enumerate()
            .filter(|(i, t)| match t.as_deref() {
                Some(t) => t == line.get(*i),
                None => line.get(*i) == WILDCARD,
            })
            .count()
    }

    fn generalise(&mut self, line: &Tokens) {
        for (i, t) in self.tokens.iter_mut().enumerate() {
            if t.as_deref().is_some_and(|t| t != line.get(i)) {
                *t = None;
            }
        }
    }

    fn text(&self) -> String {
        let mut s = String::new();
        for (i, t) in self.tokens.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(t.as_deref().unwrap_or(WILDCARD));
        }
        s
    }
}

/// The templates mined so far, and the tree that routes lines to them.
#[derive(Debug, Clone)]
pub struct Miner {
    services: HashMap<Box<str>, u32>,
    service_names: Vec<Box<str>>,
    /// (service, token count) → first tokens routed separately so far.
    children: HashMap<(u32, u32), usize>,
    /// (service, token count, hash of the first token or of `<*>`) → templates of the
    /// leaf. Two first tokens with one hash share a leaf, which only costs comparisons.
    leaves: HashMap<(u32, u32, u64), Vec<u32>>,
    /// Most templates; beyond, [`Miner::overflow`].
    limit: usize,
    /// Whether a line that matches nothing in its first word's leaf tries the `<*>` leaf
    /// of its length (merging: a template generalised at its first word in one miner
    /// takes the specific forms of other miners).
    fallback: bool,
    templates: Vec<Template>,
    /// Per service: its catch-all template once the miner is full.
    overflow: HashMap<u32, u32>,
    scratch: Tokens,
}

impl Default for Miner {
    fn default() -> Self {
        Miner::new()
    }
}

impl Miner {
    /// An empty miner for log lines.
    pub fn new() -> Self {
        Miner {
            services: HashMap::new(),
            service_names: Vec::new(),
            children: HashMap::new(),
            leaves: HashMap::new(),
            templates: Vec::new(),
            overflow: HashMap::new(),
            limit: MAX_TEMPLATES,
            fallback: false,
            scratch: Tokens::default(),
        }
    }

    #[cfg(test)]
    fn with_limit(limit: usize) -> Self {
        Miner {
            limit,
            ..Miner::new()
        }
    }

    fn service_id(&mut self, service: &str) -> u32 {
        if let Some(&id) = self.services.get(service) {
            return id;
        }
        let id = self.service_names.len() as u32;
        self.service_names.push(service.into());
        self.services.insert(service.into(), id);
        id
    }

    /// Adds one log line of `service`; returns the id of the template it joined (ids count
    /// from 0 in the order templates were started, and never change).
    pub fn add(&mut self, service: &str, body: &str) -> u32 {
        let mut tokens = std::mem::take(&mut self.scratch);
        tokens.parse(body);
        let id = self.add_tokens(service, &tokens);
        self.scratch = tokens;
        id
    }

    /// Adds already tokenised text (see [`Tokens`]).
    pub fn add_tokens(&mut self, service: &str, tokens: &Tokens) -> u32 {
        let service = self.service_id(service);
        let len = tokens.len() as u32;
        let wildcard = hash(WILDCARD);
        let first = if tokens.is_empty() || tokens.get(0).contains(WILDCARD) {
            wildcard
        } else {
            let h = hash(tokens.get(0));
            if self.leaves.contains_key(&(service, len, h)) {
                h
            } else {
                let n = self.children.entry((service, len)).or_insert(0);
                if *n < MAX_CHILDREN {
                    *n += 1;
                    h
                } else {
                    wildcard
                }
            }
        };
        let mut leaves = vec![first];
        if self.fallback && first != wildcard {
            leaves.push(wildcard);
        }
        for key in leaves {
            let Some(leaf) = self.leaves.get(&(service, len, key)) else {
                continue;
            };
            let mut best: Option<(usize, u32)> = None;
            for &id in leaf {
                let eq = self.templates[id as usize].equal_positions(tokens);
                if best.is_none_or(|(b, _)| eq > b) {
                    best = Some((eq, id));
                }
            }
            if let Some((eq, id)) = best {
                // An empty line matches the empty template.
                if len == 0 || eq as f64 >= SIMILARITY * f64::from(len) {
                    self.templates[id as usize].generalise(tokens);
                    return id;
                }
            }
        }
        if self.templates.len() >= self.limit {
            if let Some(&id) = self.overflow.get(&service) {
                return id;
            }
            let id = self.templates.len() as u32;
            self.templates.push(Template {
                service,
                tokens: vec![None],
            });
            self.overflow.insert(service, id);
            return id;
        }
        let id = self.templates.len() as u32;
        self.leaves
            .entry((service, len, first))
            .or_default()
            .push(id);
        self.templates.push(Template {
            service,
            tokens: tokens
                .iter()
                .map(|t| (t != WILDCARD).then(|| t.into()))
                .collect(),
        });
        id
    }

    /// Number of templates.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// Whether no line was added.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// Template `id` as text: its tokens separated by single spaces, `<*>` for variables.
    /// Panics if `id` is not one [`Miner::add`] returned.
    pub fn template(&self, id: u32) -> String {
        self.templates[id as usize].text()
    }

    /// The service of template `id`. Panics if `id` is not one [`Miner::add`] returned.
    pub fn service(&self, id: u32) -> &str {
        &self.service_names[self.templates[id as usize].service as usize]
    }
}

/// Reconciles templates mined separately (one miner per segment, and one for unflushed
/// logs) into one set by mining the templates themselves: routed as lines are (and, when
/// nothing matches under their first word, against the templates whose first word is
/// `<*>`), templates whose positions are at least [`SIMILARITY`] equal (`<*>` equal only
/// to `<*>`) become one, generalised.
#[derive(Debug, Clone)]
pub struct Merger {
    miner: Miner,
}

impl Default for Merger {
    fn default() -> Self {
        Merger::new()
    }
}

impl Merger {
    /// An empty merger.
    pub fn new() -> Self {
        Merger {
            miner: Miner {
                fallback: true,
                ..Miner::new()
            },
        }
    }

    /// Adds `template` (text as [`Miner::template`] gives it) of `service`; returns the id
    /// of the merged template. A template that matches nothing under its first word tries
    /// the templates whose first word is `<*>`: add those first (then larger ones before
    /// smaller: a merged template takes the shape of the first one added), so every
    /// specific form finds them.
    pub fn add(&mut self, service: &str, template: &str) -> u32 {
        let mut tokens = std::mem::take(&mut self.miner.scratch);
        tokens.of_template(template);
        let id = self.miner.add_tokens(service, &tokens);
        self.miner.scratch = tokens;
        id
    }

    /// The merged templates, as [`Miner`] names them.
    pub fn miner(&self) -> &Miner {
        &self.miner
    }
}

/// Grouping accuracy (as log-parsing benchmarks define it, e.g. Zhu et al., "Tools and
/// Benchmarks for Automated Log Parsing", ICSE-SEIP 2019): the share of lines whose
/// predicted group holds exactly the lines of their true group. `predicted[i]` and `truth[i]`
/// are line `i`'s group ids.
pub fn grouping_accuracy<P, T>(predicted: &[P], truth: &[T]) -> f64
where
    P: std::hash::Hash + Eq + Copy,
    T: std::hash::Hash + Eq + Copy,
{
    assert_eq!(predicted.len(), truth.len());
    if truth.is_empty() {
        return 1.0;
    }
    let mut size_p: HashMap<P, usize> = HashMap::new();
    let mut size_t: HashMap<T, usize> = HashMap::new();
    let mut size_pt: HashMap<(P, T), usize> = HashMap::new();
    for (&p, &t) in predicted.iter().zip(truth) {
        *size_p.entry(p).or_default() += 1;
        *size_t.entry(t).or_default() += 1;
        *size_pt.entry((p, t)).or_default() += 1;
    }
    // A predicted group is right when it equals one true group: all its lines share one
    // true group and that group has no line elsewhere.
    let right: usize = size_pt
        .iter()
        .filter(|&(&(p, t), &n)| n == size_p[&p] && n == size_t[&t])
        .map(|(_, &n)| n)
        .sum();
    right as f64 / truth.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(body: &str) -> Vec<String> {
        let mut t = Tokens::default();
        t.parse(body);
        t.iter().map(str::to_string).collect()
    }

    #[test]
    fn tokens_with_digits_are_masked_keeping_punctuation_and_keys() {
        assert_eq!(
            masked("session opened for user root by (uid=0)"),
            [
                "session",
                "opened",
                "for",
                "user",
                "root",
                "by",
                "(uid=<*>)"
            ]
        );
        assert_eq!(
            masked("Receiving block blk_-4023 src: /10.1.2.3:50010 dest: /10.0.0.9:50010"),
            ["Receiving", "block", "<*>", "src:", "/<*>", "dest:", "/<*>"]
        );
        assert_eq!(
            masked("total-vm:123kB, took 12.5ms; SHA256:ab3 HTTP/1.1\" ssh2 nvme0: x86_64"),
            [
                "total-vm:<*>,",
                "took",
                "<*>;",
                "<*>",
                "<*>\"",
                "ssh2",
                "nvme0:",
                "<*>"
            ]
        );
        // Unicode and blank input.
        assert_eq!(masked("  Größe 12 Å  "), ["Größe", "<*>", "Å"]);
        assert!(masked(" \t\n").is_empty());
        // Long lines: the tail is one variable.
        let long = vec!["w"; 300].join(" ");
        let t = masked(&long);
        assert_eq!(t.len(), MAX_TOKENS);
        assert_eq!(t.last().map(String::as_str), Some(WILDCARD));
        // A body over MAX_BODY_BYTES is cut at a char boundary.
        let wide = "é".repeat(MAX_BODY_BYTES);
        assert_eq!(masked(&wide).len(), 1);
    }

    #[test]
    fn lines_of_one_template_share_an_id_and_variables_become_wildcards() {
        let mut m = Miner::new();
        let a = m.add(
            "ssh",
            "Failed password for invalid user root from 10.0.0.1 port 22 ssh2",
        );
        let b = m.add(
            "ssh",
            "Failed password for invalid user admin from 10.0.0.7 port 2222 ssh2",
        );
        let c = m.add(
            "ssh",
            "Accepted publickey for git from 10.0.0.3 port 51000 ssh2: RSA SHA256:x1",
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            m.template(a),
            "Failed password for invalid user <*> from <*> port <*> ssh2"
        );
        // The same text in another service is another template.
        let d = m.add(
            "web",
            "Failed password for invalid user root from 10.0.0.1 port 22 ssh2",
        );
        assert_ne!(a, d);
        assert_eq!(m.service(d), "web");
        // Empty bodies share one template.
        assert_eq!(m.add("ssh", ""), m.add("ssh", "   "));
        // The first word routes: short lines that share only it or only their last word
        // stay apart.
        let x = m.add("app", "ReserveStock handled");
        let y = m.add("app", "CheckStock handled");
        assert_ne!(x, y);
        // Merging reconciles one template generalised in one miner and not in another.
        let mut other = Miner::new();
        let z = other.add(
            "ssh",
            "Failed password for invalid user root from 10.0.0.1 port 22 ssh2",
        );
        let mut merged = Merger::new();
        let (ma, mz, mx, my) = (
            merged.add("ssh", &m.template(a)),
            merged.add("ssh", &other.template(z)),
            merged.add("app", &m.template(x)),
            merged.add("app", &m.template(y)),
        );
        assert_eq!(ma, mz);
        assert_ne!(mx, my);
        assert_eq!(
            merged.miner().template(ma),
            "Failed password for invalid user <*> from <*> port <*> ssh2"
        );
    }

    #[test]
    fn lines_that_are_mostly_variables_still_share_a_template() {
        let mut m = Miner::new();
        let a = m.add("web", "GET 200 12ms 1KB");
        assert_eq!(m.add("web", "GET 404 3ms 20KB"), a);
        assert_eq!(m.template(a), "GET <*> <*> <*>");
        let n = m.add("app", "42");
        assert_eq!(m.add("app", "1234567"), n);
        // Identical templates of two miners merge, catch-alls too.
        let mut merged = Merger::new();
        assert_eq!(
            merged.add("web", "GET <*> <*> <*>"),
            merged.add("web", "GET <*> <*> <*>")
        );
        assert_eq!(merged.add("app", "<*>"), merged.add("app", "<*>"));
        // A line of exactly MAX_TOKENS words keeps its last word.
        let words: Vec<String> = (0..MAX_TOKENS).map(|i| format!("w{}", letter(i))).collect();
        let mut t = Tokens::default();
        t.parse(&words.join(" "));
        assert_eq!(t.len(), MAX_TOKENS);
        assert_eq!(t.get(MAX_TOKENS - 1), words[MAX_TOKENS - 1]);
    }

    fn letter(i: usize) -> String {
        format!(
            "{}{}",
            (b'a' + (i % 26) as u8) as char,
            (b'a' + (i / 26) as u8) as char
        )
    }

    #[test]
    fn merging_joins_a_first_word_generalised_in_one_miner_to_its_specific_forms() {
        let mut merged = Merger::new();
        // Templates whose first word is `<*>` go first (as `log_patterns` orders them).
        let general = merged.add("inventory", "<*> handled");
        assert_eq!(merged.add("inventory", "ReserveStock handled"), general);
        assert_eq!(merged.add("inventory", "CheckStock handled"), general);
        // Specific forms with nothing general to join stay apart.
        let a = merged.add("cart", "GetCart handled");
        let b = merged.add("cart", "AddItem handled");
        assert_ne!(a, b);
    }

    #[test]
    fn a_full_miner_sends_new_shapes_to_a_catch_all() {
        let mut m = Miner::with_limit(3);
        let ids: Vec<u32> = ["a", "b c", "d e f"]
            .iter()
            .map(|l| m.add("s", l))
            .collect();
        assert_eq!(ids, [0, 1, 2]);
        let over = m.add("s", "completely new shape of line here");
        assert_eq!(m.template(over), WILDCARD);
        assert_eq!(m.add("s", "another never seen shape"), over);
        // Lines of known templates still join them.
        assert_eq!(m.add("s", "b x"), 1);
        assert_ne!(
            m.add("t", "one more"),
            over,
            "each service has its own catch-all"
        );
    }

    #[test]
    fn grouping_accuracy_counts_lines_of_exactly_matching_groups() {
        assert_eq!(grouping_accuracy(&[1, 1, 2, 3], &[7, 7, 8, 9]), 1.0);
        // Group 1 merged two true groups: its three lines are wrong.
        assert_eq!(grouping_accuracy(&[1, 1, 1, 3], &[7, 7, 8, 9]), 0.25);
        // True group 7 split in two: both parts are wrong.
        assert_eq!(grouping_accuracy(&[1, 2, 3, 4], &[7, 7, 8, 9]), 0.5);
    }
}

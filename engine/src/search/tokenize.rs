//! The tokenizer: how text splits into terms.
//!
//! Rules (the same for stored text and for queries, so a query term finds exactly the
//! texts that contain it):
//!
//! 1. A **token** is a maximal run of characters that are alphanumeric in Unicode
//!    (`char::is_alphanumeric`: letters and digits of every script) or `_`. Everything
//!    else separates tokens: spaces, punctuation, symbols, `-`, `.`, `/`, `:`, `=`, quotes,
//!    emoji.
//! 2. Tokens are compared **folded**: lowercased character by character
//!    (`char::to_lowercase`), so `Refused`, `REFUSED` and `refused` are one term, and so are
//!    `İSTANBUL` and `İstanbul`. Nothing else is normalized: no stemming, no accent folding
//!    (`café` and `cafe` differ), and no Unicode normalization — a combining mark is not
//!    alphanumeric, so text written in decomposed form (`e` + U+0301) splits there, and
//!    so does `İ` once lowercased (`i` + U+0307).
//! 3. Identifiers and numbers stay whole: `a1b2c3`, `user_id`, `blk_1073741825`, `8080`
//!    and `0x1f` (as `0x1f`) are one token each. Text joined by separators splits:
//!    `10.0.0.1` is the tokens `10 0 0 1`, `order-42` is `order 42`. A query for such text
//!    is a **phrase** ([`Phrase`]): its tokens must appear consecutively, so searching
//!    `10.0.0.1` finds the address and not "10 apples, 0 pears …".
//! 4. Tokens of any length match; an index may keep only the first
//!    [`MAX_INDEXED_TOKEN_BYTES`] bytes of a token (and then confirms a candidate row by
//!    matching the full text).

use std::borrow::Cow;

/// Bytes of a folded token an index keeps; a longer token is indexed by its first bytes
/// (cut at a character boundary) and matches are confirmed on the full text.
pub const MAX_INDEXED_TOKEN_BYTES: usize = 64;

fn is_token_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// The tokens of `text`, as slices of it (not folded), in order.
pub fn tokens(text: &str) -> TokenIter<'_> {
    TokenIter { text, at: 0 }
}

/// The iterator [`tokens`] returns. ASCII bytes are classified directly; other characters
/// are decoded and asked `char::is_alphanumeric`.
#[derive(Debug, Clone)]
pub struct TokenIter<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> TokenIter<'a> {
    /// Whether the character starting at byte `i` is a token character, and its length.
    fn class(&self, i: usize) -> (bool, usize) {
        let b = self.text.as_bytes()[i];
        if b < 0x80 {
            return (b == b'_' || b.is_ascii_alphanumeric(), 1);
        }
        let c = self.text[i..].chars().next().expect("a char starts here");
        (is_token_char(c), c.len_utf8())
    }
}

impl<'a> Iterator for TokenIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let len = self.text.len();
        let mut i = self.at;
        while i < len {
            let (token, n) = self.class(i);
            if token {
                break;
            }
            i += n;
        }
        if i >= len {
            self.at = len;
            return None;
        }
        let start = i;
        while i < len {
            let (token, n) = self.class(i);
            if !token {
                break;
            }
            i += n;
        }
        self.at = i;
        Some(&self.text[start..i])
    }
}

/// `token` folded (lowercased character by character); borrowed when it already is.
pub fn fold_token(token: &str) -> Cow<'_, str> {
    if token
        .chars()
        .all(|c| c.to_lowercase().eq(std::iter::once(c)))
    {
        Cow::Borrowed(token)
    } else {
        Cow::Owned(token.chars().flat_map(char::to_lowercase).collect())
    }
}

/// Whether the token `token` (unfolded) folds to `folded`.
fn token_is(token: &str, folded: &str) -> bool {
    if token.is_ascii() {
        return token.len() == folded.len()
            && token
                .bytes()
                .zip(folded.bytes())
                .all(|(a, b)| a.to_ascii_lowercase() == b);
    }
    token
        .chars()
        .flat_map(char::to_lowercase)
        .eq(folded.chars())
}

/// A sequence of folded tokens to find in texts: one token is a term, several are a
/// phrase whose tokens must appear consecutively (separated by anything that is not a
/// token). Built from a query string by the tokenizer's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phrase {
    tokens: Vec<String>,
}

impl Phrase {
    /// The phrase of `query`'s tokens; `None` when it has none (only separators), since
    /// such a query cannot match anything by token.
    pub fn new(query: &str) -> Option<Phrase> {
        let tokens: Vec<String> = tokens(query).map(|t| fold_token(t).into_owned()).collect();
        (!tokens.is_empty()).then_some(Phrase { tokens })
    }

    /// The folded tokens, in order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Whether `text` contains the phrase: its tokens, folded, consecutively.
    pub fn matches(&self, text: &str) -> bool {
        if self.tokens.len() == 1 {
            return tokens(text).any(|t| token_is(t, &self.tokens[0]));
        }
        // Try the phrase at each token of the text, without allocating (a scan calls
        // this once per row).
        let mut rest = tokens(text);
        loop {
            let mut window = rest.clone();
            if self
                .tokens
                .iter()
                .all(|q| window.next().is_some_and(|t| token_is(t, q)))
            {
                return true;
            }
            if rest.next().is_none() {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        tokens(s).map(|t| fold_token(t).into_owned()).collect()
    }

    #[test]
    fn splits_on_everything_but_letters_digits_and_underscore() {
        assert_eq!(
            toks("ERROR: connection refused (after 3 retries) to 10.0.0.1:8080/cart?id=42"),
            [
                "error",
                "connection",
                "refused",
                "after",
                "3",
                "retries",
                "to",
                "10",
                "0",
                "0",
                "1",
                "8080",
                "cart",
                "id",
                "42"
            ]
        );
        assert_eq!(
            toks("user_id=a1b2c3 blk_1073741825 0x1F order-42"),
            ["user_id", "a1b2c3", "blk_1073741825", "0x1f", "order", "42"]
        );
        assert_eq!(toks(""), Vec::<String>::new());
        assert_eq!(toks(" -- ... !!"), Vec::<String>::new());
    }

    #[test]
    fn unicode_letters_digits_and_case() {
        assert_eq!(
            toks("Überweisung fehlgeschlagen: Konto gesperrt"),
            ["überweisung", "fehlgeschlagen", "konto", "gesperrt"]
        );
        // CJK and other scripts are letters; emoji and symbols separate.
        assert_eq!(toks("東京🚀Ошибка№5"), ["東京", "ошибка", "5"]);
        // Arabic-Indic digits are digits.
        assert_eq!(toks("رمز ٤٠٤"), ["رمز", "٤٠٤"]);
        // Folding is per character: İ lowercases to i + combining dot.
        assert_eq!(fold_token("İSTANBUL"), "i\u{307}stanbul");
        assert!(matches!(fold_token("already_lower"), Cow::Borrowed(_)));
        // No accent folding.
        assert_ne!(toks("café"), toks("cafe"));
    }

    #[test]
    fn the_byte_scanner_splits_as_a_split_on_non_token_characters_does() {
        let alphabet: Vec<char> = "aZ09_ -.:/=\"'éÜ東٤🚀\u{301}\t\n№İ".chars().collect();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..400 {
            let text: String = (0..len % 40)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            let want: Vec<&str> = text
                .split(|c: char| !is_token_char(c))
                .filter(|t| !t.is_empty())
                .collect();
            assert_eq!(tokens(&text).collect::<Vec<_>>(), want, "{text:?}");
        }
    }

    #[test]
    fn terms_match_whole_tokens_case_insensitively() {
        let p = Phrase::new("Refused").expect("a token");
        assert!(p.matches("connection refused"));
        assert!(p.matches("REFUSED: 3 retries"));
        assert!(!p.matches("refusedly"));
        assert!(!p.matches("unrefused"));
        assert!(!p.matches(""));
        let umlaut = Phrase::new("ÜBER").expect("a token");
        assert!(umlaut.matches("über alles"));
        assert!(!umlaut.matches("uber alles"));
        assert_eq!(Phrase::new(" :: "), None);
    }

    #[test]
    fn phrases_need_consecutive_tokens() {
        let p = Phrase::new("disk full").expect("tokens");
        assert!(p.matches("write failed: Disk   FULL on /var"));
        assert!(p.matches("disk-full"));
        assert!(!p.matches("full disk"));
        assert!(!p.matches("disk is full"));
        assert!(!p.matches("disk"));
        let ip = Phrase::new("10.0.0.1").expect("tokens");
        assert!(ip.matches("dial tcp 10.0.0.1:5432: refused"));
        assert!(!ip.matches("10 apples, 0 pears, 0 plums, 1 melon, 2"));
        // Overlapping starts: "a a b" contains "a b".
        assert!(Phrase::new("a b").expect("tokens").matches("a a b"));
        // Long tokens match whole, whatever an index keeps of them.
        let long = "x".repeat(MAX_INDEXED_TOKEN_BYTES + 10);
        let p = Phrase::new(&long).expect("a token");
        assert!(p.matches(&format!("id {long} end")));
        assert!(!p.matches(&format!("id {}y end", &long[..long.len() - 1])));
    }
}

//! Text search: the tokenizer that defines what a *term* is, and term and phrase matching
//! over text. SQL's `matches` function (`scrydb_sql`) and the search syntax build on it.
//!
//! Matching is defined on tokens, never on substrings: `matches(body, 'refused')` is true
//! for "Connection refused" and "REFUSED: 3 retries", false for "refusedly" (a different
//! token). See [`tokenize`] for the rules.

pub mod index;
pub mod log_patterns;
pub mod patterns;
pub mod ranges;
pub mod tokenize;

pub use tokenize::{MAX_INDEXED_TOKEN_BYTES, Phrase, fold_token, tokens};

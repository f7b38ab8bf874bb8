//! Counts in messages: `1 worker`, `2 workers`.

use std::fmt::Display;

/// `n` followed by `noun`, with an `s` unless `n` is one (every noun ringproxy counts takes
/// a plain `s`).
pub fn count<N>(n: N, noun: &str) -> String
where
    N: Display + PartialEq + From<u8>,
{
    let s = if n == N::from(1) { "" } else { "s" };
    format!("{n} {noun}{s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(count(1usize, "worker"), "1 worker");
        assert_eq!(count(2usize, "worker"), "2 workers");
        assert_eq!(count(0u32, "upstream group"), "0 upstream groups");
    }
}

//! Connection-name patterns for a stream's `from`: `tienda_*`, `tienda_0?`, `tienda_0[1-8]`.
//!
//! `*` matches any run of characters, `?` one character, `[abc]`, `[a-z]` one of a set and
//! `[!a-z]` (or `[^a-z]`) one character outside it. A name without these characters is not a
//! pattern: it must name a connection exactly.

/// Whether the text uses pattern syntax at all.
pub(crate) fn is_pattern(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Checks a pattern's syntax: every `[` needs its `]` and a non-empty set.
pub(crate) fn check(pattern: &str) -> Result<(), String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '[' {
            match class_end(&chars, i) {
                Some(end) => i = end,
                None => {
                    return Err(format!(
                        "pattern `{pattern}` has a `[` without a matching `]` (or an empty set)"
                    ));
                }
            }
        }
        i += 1;
    }
    Ok(())
}

/// Whether `name` matches `pattern` as a whole.
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    match_from(&pattern, &name)
}

fn match_from(pattern: &[char], name: &[char]) -> bool {
    // Iterative matching with one backtrack point for the last `*`: linear in practice and
    // never recursive, so a long pattern cannot blow the stack.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                '[' => {
                    if let Some(end) = class_end(pattern, p) {
                        if class_matches(&pattern[p + 1..end], name[n]) {
                            p = end + 1;
                            n += 1;
                            continue;
                        }
                    } else if name[n] == '[' {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
                c if c == name[n] => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((star_p, star_n)) => {
                p = star_p + 1;
                n = star_n + 1;
                star = Some((star_p, star_n + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// The index of the `]` closing the class that opens at `open`. A `]` right after `[` (or after
/// `[!`) belongs to the set, as in shell globs.
fn class_end(pattern: &[char], open: usize) -> Option<usize> {
    let mut i = open + 1;
    if matches!(pattern.get(i), Some('!' | '^')) {
        i += 1;
    }
    let first = i;
    while i < pattern.len() {
        if pattern[i] == ']' && i > first {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn class_matches(class: &[char], c: char) -> bool {
    let (negated, set) = match class.first() {
        Some('!' | '^') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut found = false;
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == '-' {
            found |= set[i] <= c && c <= set[i + 2];
            i += 3;
        } else {
            found |= set[i] == c;
            i += 1;
        }
    }
    found != negated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_question_marks() {
        assert!(matches("tienda_*", "tienda_01"));
        assert!(matches("tienda_*", "tienda_"));
        assert!(!matches("tienda_*", "almacen_01"));
        assert!(matches("*_01", "tienda_01"));
        assert!(matches("t*a*1", "tienda_01"));
        assert!(!matches("t*a*2", "tienda_01"));
        assert!(matches("tienda_0?", "tienda_07"));
        assert!(!matches("tienda_0?", "tienda_10"));
        assert!(matches("*", "anything"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
    }

    #[test]
    fn character_classes() {
        assert!(matches("tienda_0[1-8]", "tienda_05"));
        assert!(!matches("tienda_0[1-8]", "tienda_09"));
        assert!(matches("tienda_[01][0-9]", "tienda_16"));
        assert!(matches("r[!x]", "ry"));
        assert!(!matches("r[!x]", "rx"));
        assert!(matches("r[^x]", "ry"));
        assert!(matches("a[]]b", "a]b"));
    }

    #[test]
    fn syntax_checks() {
        assert!(is_pattern("tienda_*"));
        assert!(is_pattern("t[0-9]"));
        assert!(!is_pattern("tienda_01"));
        assert!(check("tienda_[0-9]").is_ok());
        assert!(
            check("tienda_[0-9")
                .unwrap_err()
                .contains("without a matching")
        );
        assert!(check("tienda_[]").is_err());
    }
}

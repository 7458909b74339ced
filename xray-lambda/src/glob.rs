//! Glob patterns as X-Ray's sampling rules and the SDKs' ignore lists use them: `*`
//! matches any run of characters (none included), `?` exactly one.

/// Whether `text` matches `pattern`, ignoring ASCII case (host names, HTTP methods).
pub(crate) fn matches_ignoring_case(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let text: Vec<char> = text.chars().map(|c| c.to_ascii_lowercase()).collect();
    matches_chars(&pattern, &text)
}

/// Iterative matching with one backtracking point (the last `*`): linear in practice,
/// never exponential, whatever the pattern.
fn matches_chars(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and try again.
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_question_marks() {
        let yes = [
            ("*", ""),
            ("*", "anything.at.all"),
            ("*.internal", "db.internal"),
            ("*.internal", "a.b.INTERNAL"),
            ("api.example.com", "API.Example.com"),
            ("api-?.example.com", "api-1.example.com"),
            ("*a*b*c", "xxaxxbxxc"),
            ("a*", "a"),
            ("", ""),
        ];
        for (p, t) in yes {
            assert!(matches_ignoring_case(p, t), "{p} ~ {t}");
        }
        let no = [
            ("*.internal", "internal"),
            ("*.internal", "db.internal.example.com"),
            ("api-?.example.com", "api-10.example.com"),
            ("a", ""),
            ("", "a"),
            ("*a*b*c", "xxaxxcxxb"),
        ];
        for (p, t) in no {
            assert!(!matches_ignoring_case(p, t), "{p} !~ {t}");
        }
    }

    #[test]
    fn many_stars_stay_fast() {
        let pattern = "*a".repeat(50);
        let text = "a".repeat(49) + "b";
        assert!(!matches_ignoring_case(&pattern, &text));
    }
}

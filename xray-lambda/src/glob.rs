//! Glob patterns as X-Ray's sampling rules and the SDKs' ignore lists use them: `*`
//! matches any run of characters (none included), `?` exactly one.

/// Whether `text` matches `pattern`, ignoring ASCII case (host names, HTTP methods).
///
/// Iterative, with one backtracking point (the last `*`): linear in practice, never
/// exponential, whatever the pattern. Works on the strings in place: sampling rules are
/// matched on every request, so this allocates nothing.
pub(crate) fn matches_ignoring_case(pattern: &str, text: &str) -> bool {
    let first = |s: &str, at: usize| s.get(at..).and_then(|rest| rest.chars().next());
    let (mut p, mut t) = (0, 0);
    // Where the last `*` is in the pattern, and where in the text it stops swallowing.
    let mut star: Option<(usize, usize)> = None;
    while let Some(tc) = first(text, t) {
        match first(pattern, p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(pc) if pc == '?' || pc.eq_ignore_ascii_case(&tc) => {
                p += pc.len_utf8();
                t += tc.len_utf8();
            }
            _ => match star {
                // Let the last `*` swallow one more character and try again.
                Some((sp, st)) => {
                    let swallowed = st + first(text, st).map_or(1, char::len_utf8);
                    p = sp + 1;
                    t = swallowed;
                    star = Some((sp, swallowed));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.bytes().all(|c| c == b'*'))
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
            ("caf?", "café"),
            ("*é", "passé"),
            ("?", "ü"),
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

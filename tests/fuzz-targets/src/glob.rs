//! The glob matching of bound claims and of drop-in `[bind]` grants
//! (`keybroker_core::auth::jwt::glob_match`): a tenant chooses the text (`backend_key`, a claim),
//! an operator or tenant admin the pattern. Checked against a plain dynamic-programming
//! matcher.
//! Input: the pattern, a NUL byte, the text.

use keybroker_core::auth::jwt::glob_match;

/// Matches the two halves of `data` and compares with the reference.
pub fn glob(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    let (pattern, subject) = text.split_once('\0').unwrap_or((text, ""));
    // The reference's table grows with both lengths; long inputs only have to finish.
    if (pattern.len() + 1) * (subject.len() + 1) > 1 << 20 {
        let _ = glob_match(pattern, subject);
        return;
    }
    assert_eq!(
        glob_match(pattern, subject),
        reference(pattern.as_bytes(), subject.as_bytes()),
        "{pattern:?} against {subject:?}"
    );
}

/// `*` matches any run of bytes, everything else itself: `matches[i][j]` says whether the
/// pattern's first `i` bytes match the text's first `j` bytes.
fn reference(pattern: &[u8], text: &[u8]) -> bool {
    let mut matches = vec![vec![false; text.len() + 1]; pattern.len() + 1];
    matches[0][0] = true;
    for (i, byte) in pattern.iter().enumerate() {
        for j in 0..=text.len() {
            matches[i + 1][j] = if *byte == b'*' {
                matches[i][j] || (j > 0 && matches[i + 1][j - 1])
            } else {
                j > 0 && text[j - 1] == *byte && matches[i][j - 1]
            };
        }
    }
    matches[pattern.len()][text.len()]
}

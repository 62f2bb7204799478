//! Masking of personal data in visitor messages for agents who may not see it: e-mail
//! addresses, phone numbers and card-like numbers. Masking keeps enough to recognise a value
//! again (first letter of an e-mail, last digits of a number) and nothing to reuse it.

/// Masks personal data in `text`; returns the text and whether anything was masked.
pub fn mask(text: &str) -> (String, bool) {
    mask_up_to(text, usize::MAX)
}

/// A file's name as a reader sees it: masked when a visitor named it (they may name it after
/// themselves, `lin@example.com.pdf`) and the reader may not see personal data.
pub fn file_name_for_reader(name: &str, named_by_visitor: bool, reader_sees_pii: bool) -> String {
    if named_by_visitor && !reader_sees_pii {
        mask(name).0
    } else {
        name.to_string()
    }
}

/// The first `limit` characters of `text` masked. A value that starts before the cut is
/// masked whole first: cut in two, an address or number would no longer be recognised.
pub fn masked_prefix(text: &str, limit: usize) -> String {
    mask_up_to(text, limit).0.chars().take(limit).collect()
}

/// Masks `text` until the output holds at least `limit` characters.
fn mask_up_to(text: &str, limit: usize) -> (String, bool) {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut written = 0;
    let mut masked = false;
    let mut i = 0;
    while i < chars.len() && written < limit {
        if let Some((end, replacement)) = email_at(&chars, i).or_else(|| number_at(&chars, i)) {
            written += replacement.chars().count();
            out.push_str(&replacement);
            masked = true;
            i = end;
        } else {
            out.push(chars[i]);
            written += 1;
            i += 1;
        }
    }
    (out, masked)
}

fn is_local_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-')
}

fn is_domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-')
}

/// An e-mail address starting at `start` (which must begin a word).
fn email_at(chars: &[char], start: usize) -> Option<(usize, String)> {
    if start > 0 && is_local_char(chars[start - 1]) {
        return None;
    }
    let mut at = start;
    while at < chars.len() && is_local_char(chars[at]) {
        at += 1;
    }
    if at == start || at >= chars.len() || chars[at] != '@' {
        return None;
    }
    let mut end = at + 1;
    while end < chars.len() && is_domain_char(chars[end]) {
        end += 1;
    }
    // Trailing dots end the sentence, not the domain.
    while end > at + 1 && chars[end - 1] == '.' {
        end -= 1;
    }
    let domain: String = chars[at + 1..end].iter().collect();
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2
        || labels.iter().any(|l| l.is_empty())
        || labels.last().is_some_and(|tld| tld.len() < 2)
    {
        return None;
    }
    Some((end, format!("{}***@{}", chars[start], domain)))
}

/// A phone or card-like number: 7 to 19 digits, possibly grouped by spaces, dashes, dots,
/// parentheses, with an optional leading `+`.
fn number_at(chars: &[char], start: usize) -> Option<(usize, String)> {
    let c = chars[start];
    if !(c.is_ascii_digit()
        || (c == '+' && chars.get(start + 1).is_some_and(|d| d.is_ascii_digit()))
        || c == '(')
    {
        return None;
    }
    if start > 0 && (chars[start - 1].is_ascii_alphanumeric() || chars[start - 1] == '+') {
        return None;
    }
    let mut end = start;
    let mut digits = Vec::new();
    let mut last_digit_end = start;
    while end < chars.len() {
        let ch = chars[end];
        if ch.is_ascii_digit() {
            digits.push(ch);
            end += 1;
            last_digit_end = end;
        } else if matches!(ch, ' ' | '-' | '.' | '(' | ')' | '+') && end + 1 < chars.len() {
            // A separator counts only between digits (one at a time).
            let next = chars[end + 1];
            if next.is_ascii_digit() || (ch == ' ' && next == '(') || (ch == ')' && next == ' ') {
                end += 1;
            } else {
                break;
            }
        } else {
            break;
        }
    }
    if digits.len() < 7 || digits.len() > 19 {
        return None;
    }
    if last_digit_end < chars.len() && chars[last_digit_end].is_ascii_alphanumeric() {
        return None;
    }
    let keep = 4;
    let mut shown = 0;
    let total = digits.len();
    let masked: String = chars[start..last_digit_end]
        .iter()
        .map(|&ch| {
            if ch.is_ascii_digit() {
                shown += 1;
                if shown > total - keep {
                    ch
                } else {
                    '*'
                }
            } else {
                ch
            }
        })
        .collect();
    Some((last_digit_end, masked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_emails() {
        assert_eq!(
            mask("write to jane.doe@example.com."),
            ("write to j***@example.com.".to_string(), true)
        );
        assert!(!mask("not@an address").1);
        assert!(!mask("price 5@3 each").1);
    }

    #[test]
    fn a_file_name_is_masked_only_when_a_visitor_named_it_for_a_reader_without_the_permission() {
        let name = "ann.smith@example.org.pdf";
        assert_eq!(
            file_name_for_reader(name, true, false),
            "a***@example.org.pdf"
        );
        assert_eq!(file_name_for_reader(name, true, true), name);
        assert_eq!(file_name_for_reader(name, false, false), name);
    }

    #[test]
    fn a_prefix_masks_a_value_the_cut_goes_through() {
        let text = format!(
            "{} ann.smith@example.com and +49 30 1234 5678",
            "x".repeat(130)
        );
        let preview = masked_prefix(&text, 140);
        assert_eq!(preview.chars().count(), 140);
        assert!(!preview.contains("ann.smith"), "{preview}");
        assert!(preview.ends_with(" a***@exam"), "{preview}");
        assert_eq!(
            masked_prefix("short +49 30 1234 5678", 140),
            "short +** ** **** 5678"
        );
    }

    proptest::proptest! {
        #[test]
        fn a_prefix_is_the_start_of_the_whole_text_masked(
            text in "[a-z0-9@. +()-]{0,80}",
            limit in 0usize..90,
        ) {
            let whole: String = mask(&text).0.chars().take(limit).collect();
            proptest::prop_assert_eq!(masked_prefix(&text, limit), whole);
        }
    }

    #[test]
    fn masks_phone_and_card_numbers() {
        assert_eq!(
            mask("call +86 138 0013 8000 please").0,
            "call +** *** **** 8000 please"
        );
        assert_eq!(mask("(555) 123-4567").0, "(***) ***-4567");
        assert_eq!(
            mask("card 4111 1111 1111 1111").0,
            "card **** **** **** 1111"
        );
        assert_eq!(mask("13800138000").0, "*******8000");
    }

    #[test]
    fn leaves_ordinary_numbers_and_text_alone() {
        for text in [
            "order 12345",
            "in 2026 we shipped 300 units",
            "version 1.2.3",
            "你好，我想退货",
            "room 42-17",
        ] {
            assert_eq!(mask(text), (text.to_string(), false), "{text}");
        }
    }
}

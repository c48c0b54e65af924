//! Rules for text people type (names, emails, film fields): nothing that hides or reorders it.

/// The first character of `text` that changes how the text around it is shown without being
/// seen itself: bidirectional embeddings, overrides and isolates (the "Trojan Source"
/// characters, which make `Ann` read as something else), zero-width spaces and joiners of
/// words, the byte-order mark, and the Hangul fillers that show as blank names. Zero-width
/// joiners and non-joiners (emoji sequences, Persian and Indic writing) and the left-to-right
/// and right-to-left marks are real text and pass.
pub fn hidden_character(text: &str) -> Option<char> {
    text.chars().find(|c| {
        matches!(
            c,
            '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200B}'
                | '\u{2060}'..='\u{2064}'
                | '\u{FEFF}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{3164}'
                | '\u{FFA0}'
                | '\u{180E}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
    })
}

/// The message for a refused field: which field, and which character (as U+XXXX, since it
/// cannot be seen).
pub fn hidden_character_message(field: &str, hidden: char) -> String {
    format!(
        "{field} must not contain invisible or direction-changing characters (found U+{:04X})",
        u32::from(hidden)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hiding_and_reordering_characters_are_found_and_real_text_passes() {
        assert_eq!(hidden_character("Ann\u{202E}nimda"), Some('\u{202E}'));
        assert_eq!(hidden_character("\u{2067}x"), Some('\u{2067}'));
        assert_eq!(hidden_character("a\u{200B}b"), Some('\u{200B}'));
        assert_eq!(hidden_character("\u{3164}"), Some('\u{3164}'));
        assert_eq!(hidden_character("\u{FEFF}Title"), Some('\u{FEFF}'));
        for real in [
            "Amélie",
            "千と千尋の神隠し",
            "می\u{200C}خواهم",
            "👨\u{200D}👩\u{200D}👧",
            "שלום\u{200F} world",
            "❤\u{FE0F}",
        ] {
            assert_eq!(hidden_character(real), None, "{real}");
        }
        assert_eq!(
            hidden_character_message("name", '\u{202E}'),
            "name must not contain invisible or direction-changing characters (found U+202E)"
        );
    }
}

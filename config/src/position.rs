//! Byte offsets (what the TOML parser reports) to 1-based `line:column` (what users read).

use std::ops::Range;

use crate::error::Location;

/// The start offset of every line of one text, for offset-to-position lookups.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, line_starts }
    }

    /// The position of a byte offset. Columns count characters, so a line with accents or tabs
    /// still points at the right key. Offsets past the end clamp to the end.
    pub(crate) fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |prefix| prefix.chars().count());
        Location {
            line,
            column: column + 1,
        }
    }

    /// The position where a span starts.
    pub(crate) fn start(&self, span: &Range<usize>) -> Location {
        self.location(span.start)
    }

    /// The source text of a span, if the span is valid.
    pub(crate) fn slice(&self, span: &Range<usize>) -> Option<&'a str> {
        self.text.get(span.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_lines_and_character_columns() {
        let idx = LineIndex::new("ab\nñandú = 1\n\nx");
        assert_eq!(idx.location(0), Location { line: 1, column: 1 });
        assert_eq!(idx.location(1), Location { line: 1, column: 2 });
        assert_eq!(idx.location(2), Location { line: 1, column: 3 });
        assert_eq!(idx.location(3), Location { line: 2, column: 1 });
        // "ñandú " is 6 characters but 8 bytes: the column counts characters.
        let eq = "ab\nñandú ".len();
        assert_eq!(idx.location(eq), Location { line: 2, column: 7 });
        let x = "ab\nñandú = 1\n\n".len();
        assert_eq!(idx.location(x), Location { line: 4, column: 1 });
        assert_eq!(idx.location(10_000), Location { line: 4, column: 2 });
    }
}

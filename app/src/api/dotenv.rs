//! The `.env` format berth reads (pasted or uploaded secrets) and writes
//! (exports), in one place so that the server and the browser accept exactly
//! the same files. Pure and std-only: it compiles to wasm and does no I/O.
//!
//! What `parse` accepts:
//!
//! - Lines end at `\n`; a trailing `\r` is dropped, so CRLF files work (also
//!   inside a multi-line quoted value, which therefore gets `\n` line breaks).
//!   A UTF-8 byte-order mark at the start is ignored.
//! - Blank lines and lines whose first non-blank character is `#` are skipped.
//! - `NAME=value`, optionally after `export` and whitespace. Whitespace
//!   around the name and around `=` is allowed. A name is `[A-Z_][A-Z0-9_]*`,
//!   at most 255 characters.
//! - Unquoted values are trimmed. A `#` preceded by whitespace starts a
//!   comment (`a#b` is `a#b`, `a #b` is `a`); so does a `#` right after the
//!   `=` and some whitespace (`A= #x` is empty), but not one right after the
//!   `=` (`A=#x` is `#x`). Quotes inside an unquoted value are literal.
//! - `'…'` is literal (no escapes, no `'` inside) and closes on its line.
//! - `"…"` knows the escapes `\n` `\r` `\t` `\"` `\\` `\$`; any other
//!   backslash is an error. It may span lines; the line breaks are kept. A
//!   `"` that never closes is reported on the line where it opens; the rest
//!   of the file belongs to it and is not checked further.
//! - After a closing quote only whitespace, or whitespace and a `# comment`,
//!   may follow.
//! - There is no interpolation: `$HOME` and `${HOME}` are literal text,
//!   quoted or not, because the values are stored, not run by a shell.
//! - NUL is refused in any value: no process environment can carry it.
//! - A name may be set only once: a second definition is an error rather
//!   than a silent "last one wins", which would hide a paste mistake.
//!
//! Parsing is all-or-nothing and reports every bad line at once, sorted by
//! line. Error messages never quote a value (values are secrets), and quote
//! a would-be name only when it looks like one, since the text before `=` on
//! a broken line may itself be part of a secret (a base64 line ends in `=`).

use std::collections::HashMap;

/// One problem, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// The longest variable name accepted.
const MAX_NAME_LEN: usize = 255;

/// Would-be names longer than this are not echoed in error messages: they
/// may be a piece of a value (see `looks_like_a_name`).
const MAX_ECHOED_NAME_LEN: usize = 40;

const NAME_RULE: &str = "use [A-Z_][A-Z0-9_]*";
const UNKNOWN_ESCAPE: &str =
    "unknown escape in a double-quoted value: use \\n, \\r, \\t, \\\", \\\\ or \\$";
const NUL_IN_VALUE: &str = "the value contains a NUL character, which no environment can carry";
const TEXT_AFTER_QUOTE: &str =
    "unexpected text after the closing quote: only whitespace and a `# comment` may follow";

/// Parses a .env text. All-or-nothing: Ok only when every line is valid.
///
/// # Errors
///
/// Every invalid line, as [`LineError`]s sorted by line number.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, Vec<LineError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();

    let mut pairs = Vec::new();
    let mut errors = Vec::new();
    // Name -> the line that first set it, for the duplicate check.
    let mut seen: HashMap<String, usize> = HashMap::new();

    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let mut err = |message: String| {
            errors.push(LineError {
                line: line_no,
                message,
            });
        };
        let line = lines[i].trim_start();
        if line.is_empty() || line.starts_with('#') {
            i += 1;
            continue;
        }
        let line = strip_export(line);
        let Some((raw_name, after_eq)) = line.split_once('=') else {
            err("expected NAME=value".to_string());
            i += 1;
            continue;
        };
        let name = raw_name.trim();
        let name_ok = match check_name(name) {
            Ok(()) => true,
            Err(message) => {
                err(message);
                false
            }
        };
        if name_ok {
            // Registered even when the value turns out bad: the line still
            // meant to set this name, and a later duplicate is worth
            // reporting in the same pass.
            if let Some(first) = seen.get(name) {
                err(format!("{name} is already set on line {first}"));
            } else {
                seen.insert(name.to_string(), line_no);
            }
        }

        let rest = after_eq.trim_start();
        let (value, last) = if let Some(quoted) = rest.strip_prefix('\'') {
            (parse_single(quoted, line_no, &mut errors), i)
        } else if let Some(quoted) = rest.strip_prefix('"') {
            parse_double(&lines, i, quoted, &mut errors)
        } else {
            (parse_unquoted(after_eq, line_no, &mut errors), i)
        };
        if let (true, Some(value)) = (name_ok, value) {
            pairs.push((name.to_string(), value));
        }
        i = last + 1;
    }

    if errors.is_empty() {
        Ok(pairs)
    } else {
        // Stable, so several errors on one line keep their order.
        errors.sort_by_key(|e| e.line);
        Err(errors)
    }
}

/// Renders pairs so that `parse(&render(p)) == Ok(p)` for any names that
/// pass the name rule and any values without NUL.
///
/// Names are written as given (they are not checked here). A non-empty value
/// of only `[A-Za-z0-9_./:@%+,=-]` is written bare, anything else in double
/// quotes, so that the output is also readable by other `.env` tools.
pub fn render(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        out.push_str(name);
        out.push('=');
        if !value.is_empty() && value.chars().all(is_bare_char) {
            out.push_str(value);
        } else {
            out.push('"');
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '$' => out.push_str("\\$"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('\n');
    }
    out
}

fn is_bare_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_./:@%+,=-".contains(c)
}

/// Drops a leading `export` keyword (it must be followed by whitespace, so
/// that `exportFOO=1` is still read as the name `exportFOO`).
fn strip_export(line: &str) -> &str {
    match line.strip_prefix("export") {
        Some(rest) if rest.starts_with(char::is_whitespace) => rest.trim_start(),
        _ => line,
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("missing variable name before `=`".to_string());
    }
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_');
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok {
        if name.len() > MAX_NAME_LEN {
            return Err(format!(
                "the variable name is longer than {MAX_NAME_LEN} characters"
            ));
        }
        return Ok(());
    }
    if looks_like_a_name(name) {
        Err(format!("`{name}` is not a variable name: {NAME_RULE}"))
    } else {
        Err(format!(
            "the text before `=` is not a variable name: {NAME_RULE}"
        ))
    }
}

/// Whether a rejected name is safe to quote back: short, made of the
/// characters people put in names by mistake (lowercase, `-`, `.`), and in
/// one case. Anything with spaces, quotes, `:`, `/`, `+`… may be a value
/// (`KEY: secret=…`), and so may mixed case: the last line of a pasted
/// base64 key ends in `=` too (`Xy4bA==`). Those are not repeated.
fn looks_like_a_name(name: &str) -> bool {
    let one_case = !(name.chars().any(|c| c.is_ascii_lowercase())
        && name.chars().any(|c| c.is_ascii_uppercase()));
    name.chars().count() <= MAX_ECHOED_NAME_LEN
        && one_case
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Whether what follows a closing quote is acceptable: nothing but
/// whitespace, or whitespace and then a comment.
fn tail_ok(tail: &str) -> bool {
    let trimmed = tail.trim_start();
    trimmed.is_empty() || (trimmed.starts_with('#') && tail.starts_with(char::is_whitespace))
}

/// `after_eq` is everything after the `=`, untrimmed, so that `A= #x` can
/// tell that the `#` follows whitespace.
fn parse_unquoted(after_eq: &str, line: usize, errors: &mut Vec<LineError>) -> Option<String> {
    let mut prev_blank = false;
    let mut end = after_eq.len();
    for (pos, c) in after_eq.char_indices() {
        if c == '#' && prev_blank {
            end = pos;
            break;
        }
        prev_blank = c.is_whitespace();
    }
    let value = after_eq[..end].trim();
    if value.contains('\0') {
        errors.push(LineError {
            line,
            message: NUL_IN_VALUE.to_string(),
        });
        return None;
    }
    Some(value.to_string())
}

/// `quoted` is the text after the opening `'`.
fn parse_single(quoted: &str, line: usize, errors: &mut Vec<LineError>) -> Option<String> {
    let mut err = |message: &str| {
        errors.push(LineError {
            line,
            message: message.to_string(),
        });
    };
    let Some((value, tail)) = quoted.split_once('\'') else {
        err("unterminated single quote: a single-quoted value must close on the same line");
        return None;
    };
    let mut ok = true;
    if value.contains('\0') {
        err(NUL_IN_VALUE);
        ok = false;
    }
    if !tail_ok(tail) {
        err(TEXT_AFTER_QUOTE);
        ok = false;
    }
    ok.then(|| value.to_string())
}

/// `quoted` is the rest of line `first` (0-based) after the opening `"`.
/// Returns the value (None after an error) and the index of the line the
/// value ended on.
fn parse_double(
    lines: &[&str],
    first: usize,
    quoted: &str,
    errors: &mut Vec<LineError>,
) -> (Option<String>, usize) {
    // Kept aside: if the quote never closes, the lines after it were most
    // likely not meant as part of the value, and complaints about their
    // content would only distract from the real problem.
    let mut found = Vec::new();
    let mut value = String::new();
    let mut idx = first;
    let mut text = quoted;
    loop {
        let line = idx + 1;
        let mut escape_reported = false;
        let mut nul_reported = false;
        let mut chars = text.char_indices();
        while let Some((pos, c)) = chars.next() {
            match c {
                '"' => {
                    if !tail_ok(&text[pos + 1..]) {
                        let message = if idx == first {
                            TEXT_AFTER_QUOTE.to_string()
                        } else {
                            // Most often a quote left open earlier, which
                            // this line's first quote then closed.
                            format!(
                                "{TEXT_AFTER_QUOTE} (the quote opened on line {})",
                                first + 1
                            )
                        };
                        found.push(LineError { line, message });
                    }
                    let ok = found.is_empty();
                    errors.append(&mut found);
                    return (ok.then_some(value), idx);
                }
                '\\' => match chars.next().map(|(_, e)| e) {
                    Some('n') => value.push('\n'),
                    Some('r') => value.push('\r'),
                    Some('t') => value.push('\t'),
                    Some('"') => value.push('"'),
                    Some('\\') => value.push('\\'),
                    Some('$') => value.push('$'),
                    // Includes a backslash at the end of a line: no line
                    // continuation, a real newline is simply kept.
                    _ => {
                        if !escape_reported {
                            escape_reported = true;
                            found.push(LineError {
                                line,
                                message: UNKNOWN_ESCAPE.to_string(),
                            });
                        }
                    }
                },
                '\0' => {
                    if !nul_reported {
                        nul_reported = true;
                        found.push(LineError {
                            line,
                            message: NUL_IN_VALUE.to_string(),
                        });
                    }
                }
                c => value.push(c),
            }
        }
        if idx + 1 >= lines.len() {
            errors.push(LineError {
                line: first + 1,
                message: "unterminated double quote: it opens on this line and never closes"
                    .to_string(),
            });
            return (None, idx);
        }
        value.push('\n');
        idx += 1;
        text = lines[idx];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn ok(text: &str) -> Vec<(String, String)> {
        match parse(text) {
            Ok(p) => p,
            Err(e) => panic!("expected Ok for {text:?}, got {e:?}"),
        }
    }

    fn errs(text: &str) -> Vec<LineError> {
        match parse(text) {
            Ok(p) => panic!("expected errors for {text:?}, got {p:?}"),
            Err(e) => e,
        }
    }

    fn lines_of(errors: &[LineError]) -> Vec<usize> {
        errors.iter().map(|e| e.line).collect()
    }

    /// The value of a one-line file `A=<rhs>`.
    fn value(rhs: &str) -> String {
        let p = ok(&format!("A={rhs}"));
        assert_eq!(p.len(), 1);
        p[0].1.clone()
    }

    fn single_error(text: &str) -> LineError {
        let e = errs(text);
        assert_eq!(e.len(), 1, "{e:?}");
        e[0].clone()
    }

    // --- lines, blanks, comments -------------------------------------

    #[test]
    fn empty_input_is_ok_and_empty() {
        assert_eq!(ok(""), vec![]);
        assert_eq!(ok("\n\n"), vec![]);
    }

    #[test]
    fn simple_pairs_keep_their_order() {
        assert_eq!(
            ok("B=2\nA=1\nC=3\n"),
            pairs(&[("B", "2"), ("A", "1"), ("C", "3")])
        );
    }

    #[test]
    fn last_line_without_newline() {
        assert_eq!(ok("A=1\nB=2"), pairs(&[("A", "1"), ("B", "2")]));
    }

    #[test]
    fn blank_and_comment_lines_are_skipped() {
        let text = "\n   \n\t\n# a comment\n   # indented comment\n#NOT=set\nA=1\n \t \n";
        assert_eq!(ok(text), pairs(&[("A", "1")]));
    }

    #[test]
    fn crlf_file() {
        let text = "# c\r\nA=1\r\nB='two'\r\nC=\"three\"\r\n\r\nD=x # c\r\n";
        assert_eq!(
            ok(text),
            pairs(&[("A", "1"), ("B", "two"), ("C", "three"), ("D", "x")])
        );
    }

    #[test]
    fn crlf_inside_a_multiline_value_becomes_lf() {
        assert_eq!(ok("A=\"one\r\ntwo\"\r\n"), pairs(&[("A", "one\ntwo")]));
    }

    #[test]
    fn only_one_trailing_cr_is_dropped() {
        // A lone CR in the middle of a line is kept as text.
        assert_eq!(ok("A=\"x\ry\"\r\n"), pairs(&[("A", "x\ry")]));
    }

    #[test]
    fn bom_is_ignored() {
        assert_eq!(ok("\u{feff}A=1\n"), pairs(&[("A", "1")]));
        assert_eq!(ok("\u{feff}# c\r\nA=1\r\n"), pairs(&[("A", "1")]));
        // Only at the very start.
        let e = single_error("A=1\n\u{feff}B=2\n");
        assert_eq!(e.line, 2);
    }

    // --- export and names -----------------------------------------------

    #[test]
    fn export_prefix() {
        assert_eq!(ok("export A=1\n"), pairs(&[("A", "1")]));
        assert_eq!(ok("export\tA=1\n"), pairs(&[("A", "1")]));
        assert_eq!(ok("  export   A = 1\n"), pairs(&[("A", "1")]));
        assert_eq!(ok("export EXPORT=1\n"), pairs(&[("EXPORT", "1")]));
    }

    #[test]
    fn export_needs_whitespace_after_it() {
        let e = single_error("exportA=1\n");
        assert_eq!(
            e.message,
            "the text before `=` is not a variable name: use [A-Z_][A-Z0-9_]*"
        );
        let e = single_error("export=1\n");
        assert_eq!(
            e.message,
            "`export` is not a variable name: use [A-Z_][A-Z0-9_]*"
        );
    }

    #[test]
    fn export_without_assignment() {
        let e = single_error("export A\n");
        assert_eq!(e.message, "expected NAME=value");
        let e = single_error("export =1\n");
        assert_eq!(e.message, "missing variable name before `=`");
    }

    #[test]
    fn whitespace_around_name_and_equals() {
        assert_eq!(
            ok("  A = 1\n\tB\t=\t2\t\nC= 3\nD =4\n"),
            pairs(&[("A", "1"), ("B", "2"), ("C", "3"), ("D", "4")])
        );
    }

    #[test]
    fn valid_names() {
        let p = ok("_=1\n_A=2\nA_1=3\nABC_DEF_123=4\n__=5\n");
        let names: Vec<&str> = p.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["_", "_A", "A_1", "ABC_DEF_123", "__"]);
    }

    #[test]
    fn invalid_names_are_named_in_the_error() {
        for name in ["foo", "1A", "MY-VAR", "A.B", "db.host", "9"] {
            let e = single_error(&format!("{name}=1\n"));
            assert_eq!(e.line, 1);
            assert_eq!(
                e.message,
                format!("`{name}` is not a variable name: use [A-Z_][A-Z0-9_]*")
            );
        }
    }

    #[test]
    fn mixed_case_text_before_the_equals_sign_is_not_repeated() {
        // The last line of a pasted base64 key, or a camel-case name.
        for name in ["Xy4bA", "Foo", "fooBAR"] {
            let e = single_error(&format!("{name}==\n"));
            assert_eq!(
                e.message,
                "the text before `=` is not a variable name: use [A-Z_][A-Z0-9_]*"
            );
        }
    }

    #[test]
    fn non_ascii_name_is_rejected() {
        let e = single_error("ÄPFEL=1\n");
        assert!(e.message.contains("is not a variable name"), "{e:?}");
    }

    #[test]
    fn name_with_space_is_rejected_without_quoting_it() {
        let e = single_error("MY VAR=1\n");
        assert_eq!(
            e.message,
            "the text before `=` is not a variable name: use [A-Z_][A-Z0-9_]*"
        );
    }

    #[test]
    fn empty_name() {
        let e = single_error("=1\n");
        assert_eq!(e.message, "missing variable name before `=`");
        let e = single_error("   = 1\n");
        assert_eq!(e.message, "missing variable name before `=`");
    }

    #[test]
    fn name_length_limit() {
        let longest = "A".repeat(255);
        assert_eq!(ok(&format!("{longest}=1\n")), pairs(&[(&longest, "1")]));
        let e = single_error(&format!("{}=1\n", "A".repeat(256)));
        assert_eq!(e.message, "the variable name is longer than 255 characters");
    }

    #[test]
    fn line_without_equals() {
        for text in ["A\n", "hello world\n", "A 1\n", "\"A\"\n"] {
            let e = single_error(text);
            assert_eq!(
                e,
                LineError {
                    line: 1,
                    message: "expected NAME=value".into()
                }
            );
        }
    }

    #[test]
    fn only_the_first_equals_splits() {
        assert_eq!(value("a=b=c"), "a=b=c");
        assert_eq!(value("=x"), "=x");
        assert_eq!(value("=="), "==");
    }

    // --- unquoted values ---------------------------------------------------

    #[test]
    fn unquoted_values_are_trimmed() {
        assert_eq!(value("  hello  "), "hello");
        assert_eq!(value("\thello\t"), "hello");
        assert_eq!(value("a b  c"), "a b  c");
    }

    #[test]
    fn empty_values() {
        assert_eq!(value(""), "");
        assert_eq!(value("   "), "");
        assert_eq!(value("''"), "");
        assert_eq!(value("\"\""), "");
        assert_eq!(ok("A=\nB=2\n"), pairs(&[("A", ""), ("B", "2")]));
    }

    #[test]
    fn inline_comments_need_whitespace_before_the_hash() {
        assert_eq!(value("a#b"), "a#b");
        assert_eq!(value("a #b"), "a");
        assert_eq!(value("a\t# b"), "a");
        assert_eq!(value("a  # b # c"), "a");
        assert_eq!(value("a#b #c"), "a#b");
        assert_eq!(value("#x"), "#x");
        assert_eq!(value(" #x"), "");
        assert_eq!(value("http://x/#frag"), "http://x/#frag");
    }

    #[test]
    fn unquoted_values_are_literal() {
        assert_eq!(value("a\\nb"), "a\\nb");
        assert_eq!(value("$HOME"), "$HOME");
        assert_eq!(value("${HOME}/x"), "${HOME}/x");
        assert_eq!(value("it's"), "it's");
        assert_eq!(value("say \"hi\""), "say \"hi\"");
        assert_eq!(value("héllo wörld ✓"), "héllo wörld ✓");
    }

    // --- single quotes -------------------------------------------------------

    #[test]
    fn single_quoted_values_are_literal() {
        assert_eq!(value("'a b'"), "a b");
        assert_eq!(value("'  padded  '"), "  padded  ");
        assert_eq!(value("'a\\nb\\'"), "a\\nb\\");
        assert_eq!(value("'$HOME ${X}'"), "$HOME ${X}");
        assert_eq!(value("'a #b'"), "a #b");
        assert_eq!(value("'say \"hi\"'"), "say \"hi\"");
        assert_eq!(value("  'x'  "), "x");
    }

    #[test]
    fn single_quote_followed_by_a_comment() {
        assert_eq!(value("'x' # comment"), "x");
        assert_eq!(value("'x'\t#comment"), "x");
    }

    #[test]
    fn single_quote_followed_by_text_is_an_error() {
        for rhs in ["'x'y", "'x' y", "'x'#c", "'a'b'", "'x''y'"] {
            let e = single_error(&format!("A={rhs}\n"));
            assert_eq!(e.line, 1);
            assert!(
                e.message
                    .starts_with("unexpected text after the closing quote"),
                "{e:?}"
            );
        }
    }

    #[test]
    fn single_quote_must_close_on_its_line() {
        let e = single_error("A='abc\n");
        assert_eq!(e.line, 1);
        assert!(e.message.starts_with("unterminated single quote"), "{e:?}");
        // The next line is read on its own, here as a line without `=`.
        let e = errs("A='abc\ndef'\n");
        assert_eq!(lines_of(&e), [1, 2]);
        assert_eq!(e[1].message, "expected NAME=value");
        let e = errs("A='abc\nB=2\nC='x\n");
        assert_eq!(lines_of(&e), [1, 3]);
    }

    // --- double quotes ---------------------------------------------------------

    #[test]
    fn double_quoted_escapes() {
        assert_eq!(value(r#""a\nb""#), "a\nb");
        assert_eq!(value(r#""a\rb""#), "a\rb");
        assert_eq!(value(r#""a\tb""#), "a\tb");
        assert_eq!(value(r#""a\"b""#), "a\"b");
        assert_eq!(value(r#""a\\b""#), "a\\b");
        assert_eq!(value(r#""a\$b""#), "a$b");
        assert_eq!(value(r#""\\n""#), "\\n");
        assert_eq!(value(r#""\\""#), "\\");
        assert_eq!(value(r#""\"\"""#), "\"\"");
    }

    #[test]
    fn double_quoted_keeps_spaces_hashes_and_single_quotes() {
        assert_eq!(value("\"  a #b 'c'  \""), "  a #b 'c'  ");
    }

    #[test]
    fn no_interpolation() {
        assert_eq!(value("\"$HOME\""), "$HOME");
        assert_eq!(value("\"${HOME}/bin\""), "${HOME}/bin");
        assert_eq!(ok("HOME=/root\nP=\"$HOME\"\n")[1].1, "$HOME");
    }

    #[test]
    fn unknown_escapes_are_errors() {
        for rhs in [
            r#""\q""#,
            r#""\x41""#,
            r#""\0""#,
            r#""\'""#,
            r#""\ ""#,
            r#""\u00e9""#,
        ] {
            let e = single_error(&format!("A={rhs}\n"));
            assert_eq!(e.line, 1, "{rhs}");
            assert!(e.message.starts_with("unknown escape"), "{rhs}: {e:?}");
        }
    }

    #[test]
    fn one_unknown_escape_error_per_line() {
        let e = errs("A=\"\\q\\w\nx\\e\"\n");
        assert_eq!(lines_of(&e), [1, 2]);
        assert!(e.iter().all(|e| e.message.starts_with("unknown escape")));
    }

    #[test]
    fn backslash_at_end_of_line_is_not_a_continuation() {
        let e = single_error("A=\"abc\\\ndef\"\n");
        assert_eq!(e.line, 1);
        assert!(e.message.starts_with("unknown escape"), "{e:?}");
    }

    #[test]
    fn multiline_double_quoted_value() {
        let text = "A=\"line one\n  line two\n\nline four\"\nB=2\n";
        assert_eq!(
            ok(text),
            pairs(&[("A", "line one\n  line two\n\nline four"), ("B", "2")])
        );
    }

    #[test]
    fn multiline_pem_key() {
        let text = "KEY=\"-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9==\n-----END KEY-----\n\"\n";
        assert_eq!(
            ok(text)[0].1,
            "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9==\n-----END KEY-----\n"
        );
    }

    #[test]
    fn lines_after_a_multiline_value_are_numbered_right() {
        let e = single_error("A=\"1\n2\n3\"\nB=ok\nbad\n");
        assert_eq!(e.line, 5);
        let e = single_error("A=\"1\n2\n\\q\"\n");
        assert_eq!(e.line, 3);
    }

    #[test]
    fn double_quote_followed_by_a_comment() {
        assert_eq!(value("\"x\" # comment"), "x");
        assert_eq!(value("\"x\"   "), "x");
        assert_eq!(
            ok("A=\"a\nb\" # c\nB=1\n"),
            pairs(&[("A", "a\nb"), ("B", "1")])
        );
    }

    #[test]
    fn double_quote_followed_by_text_is_an_error() {
        for rhs in ["\"x\"y", "\"x\" y", "\"x\"#c", "\"x\"\"y\"", "\"x\"'y'"] {
            let e = single_error(&format!("A={rhs}\n"));
            assert_eq!(e.line, 1);
            assert_eq!(e.message, TEXT_AFTER_QUOTE, "{rhs}");
        }
    }

    #[test]
    fn text_after_a_closing_quote_on_a_later_line() {
        // The classic forgotten quote: line 1 stays open, and line 2's first
        // quote closes it.
        let e = single_error("A=\"abc\nB=\"x\"\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("(the quote opened on line 1)"), "{e:?}");
    }

    #[test]
    fn unterminated_double_quote_names_the_opening_line() {
        let e = single_error("A=1\nB=\"abc\nC=2\nD=3\n");
        assert_eq!(e.line, 2);
        assert!(e.message.starts_with("unterminated double quote"), "{e:?}");
        let e = single_error("A=\"");
        assert_eq!(e.line, 1);
    }

    #[test]
    fn unterminated_double_quote_hides_complaints_about_later_lines() {
        // Everything after the open quote is part of its (broken) value; the
        // `\q` and the bad name there are not reported on their own.
        let e = errs("bad\nA=\"abc\nlower=\\q\n");
        assert_eq!(lines_of(&e), [1, 2]);
        assert!(e[1].message.starts_with("unterminated double quote"));
    }

    // --- NUL -----------------------------------------------------------------------

    #[test]
    fn nul_in_a_value_is_an_error() {
        for rhs in ["a\0b", "'a\0b'", "\"a\0b\"", "\"a\n\0\""] {
            let e = single_error(&format!("A={rhs}\n"));
            assert!(e.message.contains("NUL"), "{rhs:?}: {e:?}");
        }
        let e = single_error("A=\"x\n\0\"\n");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn nul_in_a_comment_is_fine() {
        assert_eq!(ok("# \0\nA=1 # \0\n"), pairs(&[("A", "1")]));
    }

    // --- duplicates ---------------------------------------------------------

    #[test]
    fn duplicate_name_is_an_error_on_the_second_line() {
        let e = single_error("A=1\nB=2\n\nA=3\n");
        assert_eq!(
            e,
            LineError {
                line: 4,
                message: "A is already set on line 1".into()
            }
        );
    }

    #[test]
    fn every_duplicate_points_at_the_first_definition() {
        let e = errs("X=1\nexport X=2\nX='3'\n");
        assert_eq!(lines_of(&e), [2, 3]);
        assert!(e.iter().all(|e| e.message == "X is already set on line 1"));
    }

    #[test]
    fn duplicate_after_a_multiline_value_counts_the_right_line() {
        let e = single_error("A=\"x\ny\"\nA=2\n");
        assert_eq!(
            e,
            LineError {
                line: 3,
                message: "A is already set on line 1".into()
            }
        );
    }

    #[test]
    fn a_bad_value_still_claims_its_name() {
        let e = errs("A=\"\\q\"\nA=2\n");
        assert_eq!(lines_of(&e), [1, 2]);
        assert_eq!(e[1].message, "A is already set on line 1");
    }

    // --- many errors at once ----------------------------------------------

    #[test]
    fn every_bad_line_is_reported_in_order() {
        let text = "\
GOOD=1
lower=x
# fine
NOEQUALS
OK_TOO='y'
Q='unclosed
D=\"a\\qb\"
GOOD=again
T=\"x\" tail
=nothing
S='x'y
N=a\0b
LAST=fine
";
        let e = errs(text);
        assert_eq!(lines_of(&e), [2, 4, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(
            e[0].message,
            "`lower` is not a variable name: use [A-Z_][A-Z0-9_]*"
        );
        assert_eq!(e[1].message, "expected NAME=value");
        assert_eq!(e[4].message, "GOOD is already set on line 1");
    }

    #[test]
    fn several_errors_on_one_line_are_all_reported() {
        let e = errs("A=1\nA='x'y\n");
        assert_eq!(lines_of(&e), [2, 2]);
        assert_eq!(e[0].message, "A is already set on line 1");
        assert_eq!(e[1].message, TEXT_AFTER_QUOTE);
    }

    #[test]
    fn errors_are_sorted_by_line() {
        let e = errs("a=1\nb=2\nC=\"x\n\\q\ny\" z\nd=4\n");
        let lines = lines_of(&e);
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted);
        assert_eq!(lines, [1, 2, 4, 5, 6]);
    }

    // --- secrecy of values -----------------------------------------------

    #[test]
    fn no_error_message_contains_a_value() {
        const CANARY: &str = "canary-7f3a";
        let bad_lines = [
            CANARY.to_string(),
            format!("A {CANARY}"),
            format!("SECRET: {CANARY}=1"),
            format!("my secret {CANARY}=x"),
            format!("{CANARY}{CANARY}/+{CANARY}=="),
            format!("lower={CANARY}"),
            format!("B='{CANARY}"),
            format!("C='{CANARY}'{CANARY}"),
            format!("D=\"{CANARY}\\q{CANARY}\""),
            format!("E=\"{CANARY}\" {CANARY}"),
            format!("F={CANARY}\0"),
            format!("G='{CANARY}\0'"),
            format!("H=\"{CANARY}\0\""),
            format!("I=\"{CANARY}\\"),
            format!("GOOD={CANARY}"),
            format!("GOOD={CANARY}"),
            format!("=\"{CANARY}\""),
            format!("{}={CANARY}", "A".repeat(300)),
            format!("J=\"{CANARY}\n{CANARY}\n{CANARY}\" {CANARY}"),
            format!("K=\"{CANARY}\n{CANARY}=\\{CANARY}"),
        ];
        let check = |e: &[LineError]| {
            for err in e {
                assert!(!err.message.contains("canary"), "leaks a value: {err:?}");
                assert!(!err.message.contains("7f3a"), "leaks a value: {err:?}");
            }
        };
        // All together (some swallow the next lines as a quoted value)…
        check(&errs(&bad_lines.join("\n")));
        // …and each alone, where every one but the first `GOOD` is bad.
        for (i, line) in bad_lines.iter().enumerate() {
            match parse(line) {
                Ok(p) => assert!(line.starts_with("GOOD="), "{i}: {p:?}"),
                Err(e) => check(&e),
            }
        }
    }

    // --- render ------------------------------------------------------------

    #[test]
    fn render_bare_values() {
        let p = pairs(&[
            ("A", "1"),
            ("URL", "https://x.example:8080/a,b@c%20+d=e-f_g.h"),
        ]);
        assert_eq!(
            render(&p),
            "A=1\nURL=https://x.example:8080/a,b@c%20+d=e-f_g.h\n"
        );
    }

    #[test]
    fn render_quotes_the_rest() {
        let p = pairs(&[
            ("E", ""),
            ("S", "a b"),
            ("D", "$HOME"),
            ("Q", "say \"hi\""),
            ("B", "a\\b"),
            ("N", "1\n2\r\n\t3"),
            ("H", "#x"),
            ("U", "é"),
            ("T", "it's"),
        ]);
        assert_eq!(
            render(&p),
            "E=\"\"\nS=\"a b\"\nD=\"\\$HOME\"\nQ=\"say \\\"hi\\\"\"\nB=\"a\\\\b\"\n\
             N=\"1\\n2\\r\\n\\t3\"\nH=\"#x\"\nU=\"é\"\nT=\"it's\"\n"
        );
    }

    #[test]
    fn render_nothing() {
        assert_eq!(render(&[]), "");
    }

    #[test]
    fn round_trip_tricky_values() {
        let values = [
            "",
            " ",
            "plain",
            "  leading and trailing  ",
            "with \"double\" quotes",
            "with 'single' quotes",
            "'",
            "\"",
            "'\"'\"",
            "#",
            "a #b",
            "a#b",
            "#!/bin/sh",
            "new\nline",
            "\n",
            "\n\n\n",
            "trailing newline\n",
            "crlf\r\nline",
            "\r",
            "tab\there",
            "$HOME",
            "${HOME}",
            "\\$HOME",
            "$",
            "back\\slash",
            "\\",
            "\\\\",
            "\\n",
            "ends with backslash\\",
            "unicode: héllo wörld ✓ 日本語 🦀",
            "\u{feff}bom inside",
            "\u{a0}nbsp\u{a0}",
            "\u{2028}line separator",
            "=",
            "a=b",
            "export A=1",
            "-----BEGIN KEY-----\nMIIB+/==\n-----END KEY-----\n",
            "\u{7}\u{1b}[0m control",
            "x\" # y",
        ];
        let p: Vec<(String, String)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("V_{i}"), v.to_string()))
            .collect();
        let text = render(&p);
        assert_eq!(parse(&text), Ok(p.clone()), "rendered:\n{text}");
        // And each one on its own.
        for pair in &p {
            let one = vec![pair.clone()];
            assert_eq!(parse(&render(&one)), Ok(one.clone()), "{:?}", pair.1);
        }
    }

    #[test]
    fn round_trip_generated_values() {
        // A small deterministic generator (no dependencies): many values
        // drawn from the characters most likely to break quoting.
        const POOL: &[char] = &[
            'a', 'Z', '0', ' ', '\t', '\n', '\r', '"', '\'', '\\', '$', '#', '=', '{', '}', 'é',
            '🦀', '\u{a0}', '\u{feff}', '`', '!', '-', '/', '%',
        ];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut p = Vec::new();
        for i in 0..500 {
            let len = (next() % 12) as usize;
            let v: String = (0..len)
                .map(|_| POOL[(next() % POOL.len() as u64) as usize])
                .collect();
            p.push((format!("G{i}"), v));
        }
        let text = render(&p);
        assert_eq!(parse(&text), Ok(p));
    }

    #[test]
    fn round_trip_names() {
        let long = "Z".repeat(255);
        let p = pairs(&[("_", "1"), ("A_B_9", "x y"), (&long, "")]);
        assert_eq!(parse(&render(&p)), Ok(p));
    }

    #[test]
    fn rendered_output_parses_with_crlf_and_bom_added() {
        let p = pairs(&[("A", "multi\nline"), ("B", "x y"), ("C", "bare")]);
        let text = format!("\u{feff}{}", render(&p).replace('\n', "\r\n"));
        assert_eq!(parse(&text), Ok(p));
    }
}
